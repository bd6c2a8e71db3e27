// Command policy-oracle prints the audit Policy decision that k8s.io/apiserver makes for each AdmissionReview
// read from stdin, one JSON line per input line, so kube-audit-rest's own evaluator can be compared with it.
//
//	policy-oracle POLICY_FILE < reviews.jsonl   -> {"level":..,"omitStages":[sorted],"omitManagedFields":..}
//	policy-oracle -check POLICY_FILE            -> {"accepted":..,"strict":..,"error":..}
//
// The AdmissionRequest -> authorizer attributes mapping below is written from kube-audit-rest's spec
// (src/audit/policy/attributes.ts documents it), independently of the TypeScript code.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func attributes(r *admissionv1.AdmissionRequest) authorizer.Attributes {
	verb := map[admissionv1.Operation]string{admissionv1.Create: "create", admissionv1.Update: "update",
		admissionv1.Delete: "delete", admissionv1.Connect: "create"}[r.Operation]
	res, sub := r.Resource, r.SubResource // the URL's resource is requestResource when the API server sent it
	if r.RequestResource != nil {
		res, sub = *r.RequestResource, r.RequestSubResource
	}
	name, namespace := r.Name, r.Namespace
	if r.Operation == admissionv1.Create && sub == "" {
		name = "" // a create POSTs to the collection: no name in the URL
		if res.Group == "" && res.Resource == "namespaces" {
			namespace = "" // POST /api/v1/namespaces is cluster-scoped
		}
	}
	return authorizer.AttributesRecord{User: &user.DefaultInfo{Name: r.UserInfo.Username, Groups: r.UserInfo.Groups},
		Verb: verb, Namespace: namespace, APIGroup: res.Group, APIVersion: res.Version, Resource: res.Resource,
		Subresource: sub, Name: name, ResourceRequest: true}
}

func check(path string) any {
	data, err := os.ReadFile(path)
	if err != nil {
		return map[string]any{"accepted": false, "error": err.Error()}
	}
	_, _, strictErr := serializer.NewCodecFactory(audit.Scheme, serializer.EnableStrict).UniversalDecoder().
		Decode(data, nil, &auditinternal.Policy{})
	if _, err := policy.LoadPolicyFromBytes(data); err != nil {
		return map[string]any{"accepted": false, "error": err.Error()}
	}
	return map[string]any{"accepted": true, "strict": !runtime.IsStrictDecodingError(strictErr)}
}

func main() {
	out := json.NewEncoder(os.Stdout)
	if len(os.Args) == 3 && os.Args[1] == "-check" {
		_ = out.Encode(check(os.Args[2]))
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: policy-oracle POLICY_FILE < reviews.jsonl | policy-oracle -check POLICY_FILE")
		os.Exit(2)
	}
	p, err := policy.LoadPolicyFromFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "policy-oracle:", err)
		os.Exit(1)
	}
	evaluator := policy.NewPolicyRuleEvaluator(p)
	w := bufio.NewWriter(os.Stdout)
	out = json.NewEncoder(w)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(in.Bytes(), &review); err != nil || review.Request == nil {
			fmt.Fprintf(os.Stderr, "policy-oracle: not an AdmissionReview with a request: %v\n", err)
			os.Exit(1)
		}
		d := evaluator.EvaluatePolicyRule(attributes(review.Request))
		stages := []string{}
		for _, s := range d.OmitStages {
			if !slices.Contains(stages, string(s)) {
				stages = append(stages, string(s))
			}
		}
		slices.Sort(stages)
		_ = out.Encode(map[string]any{"level": d.Level, "omitStages": stages, "omitManagedFields": d.OmitManagedFields})
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "policy-oracle:", err)
		os.Exit(1)
	}
	_ = w.Flush()
}
