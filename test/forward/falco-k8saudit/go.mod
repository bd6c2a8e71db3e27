module kube-audit-rest/test/forward/falco-k8saudit

go 1.24

require (
	github.com/falcosecurity/plugin-sdk-go v0.8.3
	github.com/falcosecurity/plugins/plugins/k8saudit v0.18.0
)

require (
	github.com/alecthomas/jsonschema v0.0.0-20220216202328-9eeeec9d044b // indirect
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	github.com/iancoleman/orderedmap v0.3.0 // indirect
	github.com/valyala/fastjson v1.6.4 // indirect
	golang.org/x/sys v0.13.0 // indirect
)

// Copied from the k8saudit module's own go.mod: replace directives are not inherited.
replace github.com/valyala/fastjson => github.com/geraldcombs/fastjson v0.0.0-20250801170450-bf39244e60b8
