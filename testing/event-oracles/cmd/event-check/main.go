// Command event-check judges kube-audit-rest's audit.k8s.io/v1 Event lines with the API server's own Go
// types: each stdin line is decoded strictly into k8s.io/apiserver's auditv1.Event (or, with --list, an
// auditv1.EventList as the audit webhook backend POSTs it) and then checked for the fields every consumer
// relies on. It prints one JSON object per input line: {"line":N,"ok":bool,"errors":[...]}.
//
// Exit status: 0 when all input was read, whatever the verdicts; 1 when reading or writing failed; 2 on a
// bad argument.
package main

import (
	"fmt"
	"os"

	"github.com/kube-audit-rest/kube-audit-rest/testing/event-oracles/internal/lines"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/json"
)

const usage = `usage: event-check [--list] < lines
  Decodes each line strictly into audit.k8s.io/v1 Event (--list: EventList) and prints
  {"line":N,"ok":bool,"errors":[...]} per line.`

// verdict is the result printed for one input line.
type verdict struct {
	Line   int      `json:"line"`
	OK     bool     `json:"ok"`
	Errors []string `json:"errors"`
}

func main() {
	list := false
	switch {
	case len(os.Args) == 1:
	case len(os.Args) == 2 && os.Args[1] == "--list":
		list = true
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	lines.Main("event-check", func(number int, line []byte) any {
		var errs []string
		if list {
			errs = checkList(line)
		} else {
			errs = checkEvent(line)
		}
		return verdict{Line: number, OK: len(errs) == 0, Errors: append([]string{}, errs...)}
	})
}

// decodeStrict decodes like the API server's strict JSON serializer (sigs.k8s.io/json UnmarshalStrict:
// case-sensitive keys, unknown and duplicate fields refused). It reports whether v was decoded completely,
// which is when the field checks that follow mean something.
func decodeStrict(line []byte, v any) (errs []string, complete bool) {
	strictErrs, err := json.UnmarshalStrict(line, v)
	if err != nil {
		return []string{"decode: " + err.Error()}, false
	}
	for _, strictErr := range strictErrs {
		errs = append(errs, "strict: "+strictErr.Error())
	}
	return errs, true
}

func checkEvent(line []byte) []string {
	var event auditv1.Event
	errs, complete := decodeStrict(line, &event)
	if !complete {
		return errs
	}
	errs = append(errs, checkTypeMeta("", event.Kind, event.APIVersion, "Event", false)...)
	return append(errs, checkFields("", &event)...)
}

func checkList(line []byte) []string {
	var list auditv1.EventList
	errs, complete := decodeStrict(line, &list)
	if !complete {
		return errs
	}
	errs = append(errs, checkTypeMeta("", list.Kind, list.APIVersion, "EventList", false)...)
	if list.Items == nil {
		errs = append(errs, "items: required (the API server always sends the array)")
	}
	for i := range list.Items {
		prefix := fmt.Sprintf("items[%d].", i)
		item := &list.Items[i]
		// The API server converts the list as a whole, so its items carry no kind or apiVersion of their own.
		errs = append(errs, checkTypeMeta(prefix, item.Kind, item.APIVersion, "Event", true)...)
		errs = append(errs, checkFields(prefix, item)...)
	}
	return errs
}

const groupVersion = "audit.k8s.io/v1"

func checkTypeMeta(prefix, kind, apiVersion, wantKind string, mayBeEmpty bool) []string {
	var errs []string
	if kind != wantKind && !(mayBeEmpty && kind == "") {
		errs = append(errs, fmt.Sprintf("%skind: must be %q, got %q", prefix, wantKind, kind))
	}
	if apiVersion != groupVersion && !(mayBeEmpty && apiVersion == "") {
		errs = append(errs, fmt.Sprintf("%sapiVersion: must be %q, got %q", prefix, groupVersion, apiVersion))
	}
	return errs
}

// checkFields holds kube-audit-rest's own requirements: upstream has no validation for Event, so these are
// the fields the API server always fills and that Falco, Elastic and the like read.
func checkFields(prefix string, e *auditv1.Event) []string {
	var errs []string
	fail := func(format string, args ...any) {
		errs = append(errs, prefix+fmt.Sprintf(format, args...))
	}
	switch e.Level {
	case auditv1.LevelNone, auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse:
	default:
		fail("level: must be None, Metadata, Request or RequestResponse, got %q", e.Level)
	}
	if e.AuditID == "" {
		fail("auditID: required, is empty or missing")
	}
	switch e.Stage {
	case auditv1.StageRequestReceived, auditv1.StageResponseStarted, auditv1.StageResponseComplete, auditv1.StagePanic:
	default:
		fail("stage: must be RequestReceived, ResponseStarted, ResponseComplete or Panic, got %q", e.Stage)
	}
	if e.RequestURI == "" {
		fail("requestURI: required, is empty or missing")
	}
	if e.Verb == "" {
		fail("verb: required, is empty or missing")
	}
	if e.User.Username == "" {
		fail("user.username: required, is empty or missing")
	}
	if e.RequestReceivedTimestamp.IsZero() {
		fail("requestReceivedTimestamp: required, is null or missing")
	}
	if e.StageTimestamp.IsZero() {
		fail("stageTimestamp: required, is null or missing")
	}
	if !e.RequestReceivedTimestamp.IsZero() && !e.StageTimestamp.IsZero() &&
		e.StageTimestamp.Before(&e.RequestReceivedTimestamp) {
		fail("stageTimestamp: is before requestReceivedTimestamp")
	}
	// What a level records (k8s.io/apiserver pkg/apis/audit/v1 types.go, the Level constants): Metadata has
	// no bodies, Request has the request body only.
	switch e.Level {
	case auditv1.LevelMetadata, auditv1.LevelNone:
		if e.RequestObject != nil {
			fail("requestObject: level %s records no request body", e.Level)
		}
		if e.ResponseObject != nil {
			fail("responseObject: level %s records no response body", e.Level)
		}
	case auditv1.LevelRequest:
		if e.ResponseObject != nil {
			fail("responseObject: level Request records no response body")
		}
	}
	return errs
}
