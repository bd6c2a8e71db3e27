// Command falco-fields shows what Falco's k8saudit plugin reads from kube-audit-rest's Event lines. Each stdin
// line goes through the plugin's own code as Falco drives it: the payload parser that the plugin's file and
// webhook sources use (ParseAuditEventsPayload: kind Event or EventList, stageTimestamp, the maxEventSize
// limit), then Plugin.Extract for every field the plugin declares, with the event bytes the parser produced.
//
// One JSON object per event (an Event line gives one; an EventList line one per item):
//
//	{"line":N,"event":I,"fields":{"ka.verb":"create","ka.req.pod.containers.image":["nginx"],...},"errors":{}}
//
// A field the plugin leaves unset (Falco's "<NA>") is absent from "fields"; a field whose extraction fails is
// in "errors". A line the parser refuses gives {"line":N,"error":"..."}; an event it refuses
// {"line":N,"event":I,"error":"..."}.
//
// Fields: every declared field whose argument is optional, extracted without one (list fields then cover
// all containers), plus ka.uri.param[command] and ka.uri.param[container]; each command-line argument of
// the form name[arg] (an index for index fields, a key for key fields) adds one more.
//
// With --webhook=URL (and --ssl-certificate=FILE for https) it reads nothing from stdin: the plugin's own
// webhook source listens at URL and each event it delivers is printed as {"received":N,"fields":...} (see
// webhook.go).
//
// Exit status: 0 when all input was read, whatever was extracted; 1 when reading or writing failed; 2 on a
// bad argument.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/falcosecurity/plugin-sdk-go/pkg/sdk"
	"github.com/falcosecurity/plugins/plugins/k8saudit/pkg/k8saudit"
	"github.com/kube-audit-rest/kube-audit-rest/testing/event-oracles/internal/lines"
)

// defaultArgFields are the argument-taking fields Falco's default k8s audit rules use on exec and attach:
// the command run and the container chosen.
var defaultArgFields = []string{"ka.uri.param[command]", "ka.uri.param[container]"}

// lineResult is printed for a line the payload parser refuses.
type lineResult struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// eventResult is printed for each event of a line.
type eventResult struct {
	Line   int               `json:"line"`
	Event  int               `json:"event"`
	Error  string            `json:"error,omitempty"`
	Fields map[string]any    `json:"fields,omitempty"`
	Errors map[string]string `json:"errors,omitempty"`
}

func main() {
	webhookURL, sslCertificate, fieldArgs := splitArgs(os.Args[1:])
	config := "{}"
	if sslCertificate != "" {
		encoded, _ := json.Marshal(map[string]string{"sslCertificate": sslCertificate})
		config = string(encoded)
	}
	plugin := &k8saudit.Plugin{}
	// Init is what Falco calls first; with "{}" it keeps PluginConfig.Reset()'s defaults, among them
	// maxEventSize (256 KiB). A zero-valued Plugin would refuse every event as too large.
	if err := plugin.Init(config); err != nil {
		fmt.Fprintf(os.Stderr, "falco-fields: plugin init: %v\n", err)
		os.Exit(1)
	}
	requests, err := buildRequests(plugin.Fields(), append(append([]string{}, defaultArgFields...), fieldArgs...))
	if err != nil {
		fmt.Fprintf(os.Stderr, "falco-fields: %v\n", err)
		os.Exit(2)
	}
	if webhookURL != "" {
		if err := serveWebhook(plugin, requests, webhookURL); err != nil {
			fmt.Fprintf(os.Stderr, "falco-fields: %v\n", err)
			os.Exit(1)
		}
		return
	}

	w := lines.NewStdoutWriter()
	// Falco numbers events from 1; the plugin's decode cache starts at 0, so 0 must never be used.
	var eventNum uint64
	err = lines.Each(os.Stdin, func(number int, line []byte) error {
		events, err := plugin.ParseAuditEventsPayload(line)
		if err != nil {
			return w.Write(lineResult{Line: number, Error: err.Error()})
		}
		for i, pushed := range events {
			result := eventResult{Line: number, Event: i}
			if pushed.Err != nil {
				result.Error = pushed.Err.Error()
			} else {
				eventNum++
				result.Fields, result.Errors = extractAll(plugin, requests, eventNum, pushed.Data)
			}
			if err := w.Write(result); err != nil {
				return err
			}
		}
		return nil
	})
	if flushErr := w.Flush(); err == nil {
		err = flushErr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "falco-fields: %v\n", err)
		os.Exit(1)
	}
}

func extractAll(plugin *k8saudit.Plugin, requests []*request, eventNum uint64, data []byte) (map[string]any, map[string]string) {
	fields := map[string]any{}
	errs := map[string]string{}
	evt := &event{num: eventNum, data: data}
	for _, req := range requests {
		req.value, req.set, req.setErr = nil, false, ""
		// Extract is the plugin's entry point for the SDK: it drops "field not available", as Falco does.
		if err := plugin.Extract(req, evt); err != nil {
			errs[req.label] = err.Error()
			continue
		}
		if req.setErr != "" {
			errs[req.label] = req.setErr
			continue
		}
		if req.set {
			fields[req.label] = req.value
		}
	}
	return fields, errs
}

// buildRequests makes one request per field without a required argument, then one per name[arg] in extra.
func buildRequests(entries []sdk.FieldEntry, extra []string) ([]*request, error) {
	byName := map[string]int{}
	var requests []*request
	for id, entry := range entries {
		byName[entry.Name] = id
		if entry.Arg.IsRequired {
			continue
		}
		requests = append(requests, newRequest(uint64(id), entry, entry.Name))
	}
	for _, spec := range extra {
		open := strings.IndexByte(spec, '[')
		if open < 0 || !strings.HasSuffix(spec, "]") {
			return nil, fmt.Errorf("field %q: expected name[arg]", spec)
		}
		name, arg := spec[:open], spec[open+1:len(spec)-1]
		id, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("field %q: the plugin declares no field %q", spec, name)
		}
		entry := entries[id]
		req := newRequest(uint64(id), entry, spec)
		switch {
		case entry.Arg.IsKey:
			req.argPresent, req.argKey = true, arg
		case entry.Arg.IsIndex:
			index, err := strconv.ParseUint(arg, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("field %q: %s takes an index: %v", spec, name, err)
			}
			req.argPresent, req.argIndex = true, index
		default:
			return nil, fmt.Errorf("field %q: %s takes no argument", spec, name)
		}
		requests = append(requests, req)
	}
	return requests, nil
}

func newRequest(id uint64, entry sdk.FieldEntry, label string) *request {
	// Every k8saudit field is declared "string"; the framework would give any other type its own constant.
	fieldType := sdk.FieldTypeCharBuf
	if entry.Type != "string" {
		fieldType = sdk.FieldTypeUint64
	}
	return &request{id: id, fieldType: fieldType, field: entry.Name, isList: entry.IsList, label: label}
}

// request implements sdk.ExtractRequest for one field, as the SDK fills it from the field's declaration.
type request struct {
	id         uint64
	fieldType  uint32
	field      string
	isList     bool
	argPresent bool
	argIndex   uint64
	argKey     string
	label      string

	value  any
	set    bool
	setErr string
}

func (r *request) FieldID() uint64                   { return r.id }
func (r *request) FieldType() uint32                 { return r.fieldType }
func (r *request) Field() string                     { return r.field }
func (r *request) ArgKey() string                    { return r.argKey }
func (r *request) ArgIndex() uint64                  { return r.argIndex }
func (r *request) ArgPresent() bool                  { return r.argPresent }
func (r *request) IsList() bool                      { return r.isList }
func (r *request) WantOffset() bool                  { return false }
func (r *request) SetValueOffset(_, _ uint32)        {}
func (r *request) SetPtr(unsafe.Pointer)             {}
func (r *request) SetOffsetPtrs(_, _ unsafe.Pointer) {}

// SetValue keeps the value, refusing (as the SDK would by panicking) a type that does not fit the field.
func (r *request) SetValue(v any) {
	switch value := v.(type) {
	case string:
		if r.fieldType == sdk.FieldTypeCharBuf && !r.isList {
			r.value, r.set = value, true
			return
		}
	case []string:
		if r.fieldType == sdk.FieldTypeCharBuf && r.isList {
			if value == nil {
				value = []string{}
			}
			r.value, r.set = value, true
			return
		}
	}
	r.setErr = fmt.Sprintf("SetValue(%T) does not fit a %s field (list: %t); the plugin SDK would panic", v,
		fieldTypeName(r.fieldType), r.isList)
}

func fieldTypeName(t uint32) string {
	if t == sdk.FieldTypeCharBuf {
		return "string"
	}
	return "uint64"
}

// event implements sdk.EventReader over the bytes the payload parser produced for one event.
type event struct {
	num  uint64
	data []byte
}

func (e *event) EventNum() uint64      { return e.num }
func (e *event) Timestamp() uint64     { return 0 }
func (e *event) Reader() io.ReadSeeker { return bytes.NewReader(e.data) }
