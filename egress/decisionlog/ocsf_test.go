package decisionlog

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/rules"
)

// The OCSF schema's requirements for the classes written, as its source
// states them (github.com/ocsf/ocsf-schema: events/base_event.json,
// events/network/network.json, network_activity.json,
// http_activity.json, dns_activity.json, objects/*.json, and the enums of
// dictionary.json).
var (
	// base_event: required attributes of every event.
	ocsfBaseRequired = []string{"activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"}
	// metadata: required; product: an _entity, at least one of name, uid.
	ocsfMetadataRequired = []string{"product", "version"}
	ocsfProductOneOf     = []string{"name", "uid"}
	// network (the category's base): at least one of the endpoints, and
	// an endpoint (network_endpoint) names at least one of these.
	ocsfNetworkOneOf  = []string{"dst_endpoint", "src_endpoint"}
	ocsfEndpointOneOf = []string{"ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name", "domain"}
	// Each class's activity_id enum (0 unknown and 99 other are every
	// class's).
	ocsfActivities = map[float64][]float64{
		ocsfNetworkActivity: {0, 1, 2, 3, 4, 5, 6, 7, 99},
		ocsfHTTPActivity:    append([]float64{0, 99}, seq(1, 40)...),
		ocsfDNSActivity:     {0, 1, 2, 6, 99},
	}
	// http_activity: at least one of these.
	ocsfHTTPOneOf = []string{"http_request", "http_response"}
	// url: at least one of these.
	ocsfURLOneOf = []string{"url_string", "path"}
	// security_control's enums; severity_id's.
	ocsfActionIDs      = []float64{0, 1, 2, 99}
	ocsfDispositionIDs = append([]float64{99}, seq(0, 27)...)
	ocsfSeverityIDs    = []float64{0, 1, 2, 3, 4, 5, 6, 99}
)

func seq(from, to float64) []float64 {
	var out []float64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// validateOCSF fails t for every way one event misses the requirements.
func validateOCSF(t *testing.T, line []byte) {
	t.Helper()
	for _, p := range ocsfProblems(line) {
		t.Errorf("%s: %s", p, line)
	}
}

// ocsfProblems are the ways an event misses the requirements above.
func ocsfProblems(line []byte) (problems []string) {
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var e map[string]any
	if err := json.Unmarshal(line, &e); err != nil {
		fail("not JSON: %v", err)
		return problems
	}
	requireAll(e, ocsfBaseRequired, "event", fail)
	requireOneOf(e, ocsfNetworkOneOf, "event", fail)
	class, activity := e["class_uid"], e["activity_id"]
	allowed, ok := ocsfActivities[num(class)]
	if !ok {
		fail("class_uid %v is not one of 4001, 4002, 4003", class)
		return problems
	}
	if !slices.Contains(allowed, num(activity)) {
		fail("activity_id %v is not in class %v's enum", activity, class)
	}
	if num(e["category_uid"]) != 4 {
		fail("category_uid %v, want 4 (Network Activity)", e["category_uid"])
	}
	if num(e["type_uid"]) != num(class)*100+num(activity) {
		fail("type_uid %v is not class_uid*100+activity_id", e["type_uid"])
	}
	if num(e["time"]) <= 0 {
		fail("time %v is not a timestamp", e["time"])
	}
	for field, enum := range map[string][]float64{"action_id": ocsfActionIDs, "disposition_id": ocsfDispositionIDs, "severity_id": ocsfSeverityIDs} {
		if v, ok := e[field]; ok && !slices.Contains(enum, num(v)) {
			fail("%s %v is not in its enum", field, v)
		}
	}
	meta := object(e, "metadata", fail)
	requireAll(meta, ocsfMetadataRequired, "metadata", fail)
	requireOneOf(object(meta, "product", fail), ocsfProductOneOf, "metadata.product", fail)
	for _, ep := range ocsfNetworkOneOf {
		if _, ok := e[ep]; ok {
			requireOneOf(object(e, ep, fail), ocsfEndpointOneOf, ep, fail)
		}
	}
	if _, ok := e["connection_info"]; ok {
		requireAll(object(e, "connection_info", fail), []string{"direction_id"}, "connection_info", fail)
	}
	switch num(class) {
	case ocsfHTTPActivity:
		requireOneOf(e, ocsfHTTPOneOf, "event", fail)
		if req, ok := e["http_request"].(map[string]any); ok {
			if _, ok := req["url"]; ok {
				requireOneOf(object(req, "url", fail), ocsfURLOneOf, "http_request.url", fail)
			}
		}
	case ocsfDNSActivity:
		if _, ok := e["query"]; ok {
			requireAll(object(e, "query", fail), []string{"hostname"}, "query", fail) // dns_query
		}
		if answers, ok := e["answers"].([]any); ok {
			for _, a := range answers {
				if m, _ := a.(map[string]any); m == nil || m["rdata"] == nil { // dns_answer
					fail("an answer without rdata")
				}
			}
		}
	}
	return problems
}

func num(v any) float64 { f, _ := v.(float64); return f }

func object(m map[string]any, field string, fail func(string, ...any)) map[string]any {
	o, ok := m[field].(map[string]any)
	if !ok {
		fail("%s is not an object", field)
	}
	return o
}

func requireAll(m map[string]any, fields []string, what string, fail func(string, ...any)) {
	for _, f := range fields {
		if v, ok := m[f]; !ok || v == nil || v == "" {
			fail("%s lacks the required %s", what, f)
		}
	}
}

func requireOneOf(m map[string]any, fields []string, what string, fail func(string, ...any)) {
	for _, f := range fields {
		if v, ok := m[f]; ok && v != nil && v != "" {
			return
		}
	}
	fail("%s has none of %v", what, fields)
}

// ocsfRecords are one record of every kind the filter logs.
func ocsfRecords() []Record {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []Record{
		{Time: at, Container: "c1", Generation: 1, Protocol: "dns", Source: "10.0.0.2:40000", Destination: "10.0.0.1:53", Host: "api.github.com", QueryType: "A", ResolvedIP: "140.82.1.1", Decision: "allow", Reason: rules.ReasonAllowed, Rule: "github"},
		{Time: at, Container: "c1", Generation: 1, Protocol: "dns", Source: "10.0.0.2:40001", Host: "evil.test", QueryType: "AAAA", Decision: "deny", Reason: rules.ReasonNotAllowed},
		{Time: at, Container: "c1", Generation: 1, Protocol: "dns", Source: "10.0.0.2:40002", Decision: "deny", Reason: rules.ReasonNotAllowed}, // a malformed query: no name
		{Time: at, Container: "c1", Generation: 1, Protocol: "tls", Source: "10.0.0.2:50000", Destination: "140.82.1.1:443", Host: "api.github.com", Port: 443, ResolvedIP: "140.82.1.1", Decision: "allow", Reason: rules.ReasonAllowed, Rule: "github", BytesOut: 500, BytesIn: 9000, DurationMS: 120.5},
		{Time: at, Container: "c1", Generation: 1, Protocol: "tls", Source: "10.0.0.2:50001", Destination: "1.2.3.4:443", Host: "evil.test", Port: 443, Decision: "deny", Reason: rules.ReasonNotAllowed},
		{Time: at, Container: "c1", Generation: 1, Protocol: "tcp", Source: "10.0.0.2:50002", Destination: "1.2.3.4:22", Port: 22, Decision: "deny", Reason: rules.ReasonNotHTTP},
		{Time: at, Container: "c1", Generation: 1, Protocol: "tcp", Decision: "deny", Reason: rules.ReasonConnLimit}, // refused before anything was read
		{Time: at, Container: "c1", Generation: 2, Protocol: "http", Source: "10.0.0.2:50003", Destination: "1.2.3.5:80", Host: "pypi.org", Port: 80, Method: "GET", Path: "/simple/", Decision: "allow", Reason: rules.ReasonAllowed, Rule: "pypi"},
		{Time: at, Container: "c1", Generation: 2, Protocol: "http", Source: "10.0.0.2:50003", Host: "pypi.org", Port: 80, Method: "PROPFIND", Path: "/x", Decision: "deny", Reason: rules.ReasonNotAllowed, Status: 403},
		{Time: at, Container: "c1", Generation: 2, Protocol: "http", Source: "10.0.0.2:50004", Destination: "1.2.3.5:80", Host: "pypi.org", Port: 80, Decision: "allow", Reason: rules.ReasonAllowed, BytesOut: 80, BytesIn: 4000}, // the connection
		{Time: at, Container: "c1", Generation: 2, Protocol: "https", Host: "api.example.com", Port: 443, Method: "POST", Path: "/mcp", Calls: []string{"tools/call:search"}, Decision: "audit", Reason: rules.ReasonNotAllowed, Status: 200, Detail: "audit mode"},
		{Time: at, Container: "c1", Generation: 2, Protocol: "tls", Host: "evil.test", Port: 443, Decision: "deny", Reason: rules.ReasonNotAllowed, Aggregated: 41, Since: at.Add(-10 * time.Second)},
		{Time: at, Container: "c1", Generation: 2, Protocol: "dns", Decision: "dropped", Reason: rules.ReasonLogRate, Dropped: 1507, Since: at.Add(-time.Second)},
	}
}

// TestOCSFEventsValid: every kind of record becomes an event that meets
// its OCSF class's requirements, in the class its protocol calls for.
func TestOCSFEventsValid(t *testing.T) {
	wantClass := []float64{4003, 4003, 4003, 4001, 4001, 4001, 4001, 4002, 4002, 4002, 4002, 4001, 4001}
	for i, r := range ocsfRecords() {
		line, err := encodeOCSF(r)
		if err != nil {
			t.Fatal(err)
		}
		validateOCSF(t, line)
		var e struct {
			ClassUID float64 `json:"class_uid"`
		}
		_ = json.Unmarshal(line, &e)
		if e.ClassUID != wantClass[i] {
			t.Errorf("record %d (%s %s): class %v, want %v", i, r.Protocol, r.Method, e.ClassUID, wantClass[i])
		}
	}
}

// The validator itself rejects what the schema requires: an event that
// lacks a required attribute, or has an activity outside its class's enum.
func TestOCSFValidatorRejects(t *testing.T) {
	line, _ := encodeOCSF(ocsfRecords()[0])
	for _, breakIt := range []func(map[string]any){
		func(e map[string]any) { delete(e, "severity_id") },
		func(e map[string]any) { delete(e["metadata"].(map[string]any), "version") },
		func(e map[string]any) { e["activity_id"] = 5.0 },
		func(e map[string]any) { delete(e["query"].(map[string]any), "hostname") },
		func(e map[string]any) { delete(e, "src_endpoint"); delete(e, "dst_endpoint") },
	} {
		var e map[string]any
		_ = json.Unmarshal(line, &e)
		breakIt(e)
		broken, _ := json.Marshal(e)
		if len(ocsfProblems(broken)) == 0 {
			t.Errorf("the validator accepted %s", broken)
		}
	}
}

// TestOCSFLogReadsBack: a log written as OCSF reads back (ReadLog, which
// clawrun audit uses) as the very records written, and so does a log
// whose format changed half-way.
func TestOCSFLogReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c1.egress.jsonl")
	records := ocsfRecords()
	half := len(records) / 2
	plain, err := NewLog(path, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records[:half] {
		if err := plain.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	plain.Close()
	ocsf, err := NewLogFormat(path, 1<<20, 1, FormatOCSF)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records[half:] {
		if err := ocsf.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	ocsf.Close()
	var got []Record
	if err := ReadLog(path, false, nil, func(r Record) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(records) {
		t.Fatalf("read %d records, want %d", len(got), len(records))
	}
	for i := range records {
		if !reflect.DeepEqual(got[i], records[i]) {
			t.Errorf("record %d read back as\n  %+v\nwant\n  %+v", i, got[i], records[i])
		}
	}
}

func TestUnknownLogFormatRefused(t *testing.T) {
	if _, err := NewLogFormat(filepath.Join(t.TempDir(), "l"), 1<<20, 1, "cef"); err == nil {
		t.Fatal("a log in an unknown format was opened")
	}
}
