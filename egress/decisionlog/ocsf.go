package decisionlog

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"

	"github.com/clawrun/clawrun/runtime/policy"
)

// Format is how a Log writes its records: one JSON object a line either
// way.
type Format string

const (
	// FormatClawrun writes each Record as it is (the default).
	FormatClawrun Format = policy.LogFormatClawrun
	// FormatOCSF writes each Record as an OCSF 1.x event: DNS Activity
	// (4003) for DNS queries, HTTP Activity (4002) for what the filter
	// decided of HTTP (plain HTTP connections and requests, the requests
	// of inspected TLS), Network Activity (4001) for other connections and
	// the log's own summary lines. The
	// Record itself rides along in unmapped.clawrun, so that ReadLog (and
	// clawrun audit) reads it back whole.
	FormatOCSF Format = policy.LogFormatOCSF
)

// The OCSF classes written, their category (Network Activity, 4) and the
// version of the schema they follow.
const (
	ocsfCategoryNetwork = 4
	ocsfNetworkActivity = 4001
	ocsfHTTPActivity    = 4002
	ocsfDNSActivity     = 4003
	ocsfVersion         = "1.2.0"
)

// ocsfEvent is the part of an OCSF event written here: the base event's
// required attributes, the security control profile's action and
// disposition, and each class's own objects.
type ocsfEvent struct {
	ActivityID   int          `json:"activity_id"`
	ActivityName string       `json:"activity_name,omitempty"`
	CategoryUID  int          `json:"category_uid"`
	ClassUID     int          `json:"class_uid"`
	TypeUID      int          `json:"type_uid"`
	Time         int64        `json:"time"` // milliseconds since the epoch
	StartTime    int64        `json:"start_time,omitempty"`
	Count        int64        `json:"count,omitempty"`
	SeverityID   int          `json:"severity_id"`
	Metadata     ocsfMetadata `json:"metadata"`
	Message      string       `json:"message,omitempty"`
	Status       string       `json:"status,omitempty"`
	StatusDetail string       `json:"status_detail,omitempty"`
	// action_id: 1 allowed, 2 denied, 99 other; disposition_id: 1
	// allowed, 2 blocked, 17 logged (audit mode waived it), 6 dropped.
	ActionID      int    `json:"action_id"`
	Action        string `json:"action,omitempty"`
	DispositionID int    `json:"disposition_id"`

	SrcEndpoint   *ocsfEndpoint    `json:"src_endpoint,omitempty"`
	DstEndpoint   *ocsfEndpoint    `json:"dst_endpoint,omitempty"`
	Traffic       *ocsfTraffic     `json:"traffic,omitempty"`
	ConnectionInf *ocsfConnection  `json:"connection_info,omitempty"`
	Query         *ocsfDNSQuery    `json:"query,omitempty"`
	Answers       []ocsfDNSAnswer  `json:"answers,omitempty"`
	HTTPRequest   *ocsfHTTPRequest `json:"http_request,omitempty"`
	HTTPStatus    int              `json:"http_status,omitempty"`
	DurationMS    int64            `json:"duration,omitempty"`
	Unmapped      ocsfUnmapped     `json:"unmapped"`
}

type ocsfMetadata struct {
	Version string      `json:"version"`
	Product ocsfProduct `json:"product"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

type ocsfEndpoint struct {
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Name: the container, for the source.
	Name string `json:"name,omitempty"`
}

type ocsfTraffic struct {
	BytesOut int64 `json:"bytes_out"`
	BytesIn  int64 `json:"bytes_in"`
}

type ocsfConnection struct {
	DirectionID  int    `json:"direction_id"` // 2: outbound
	ProtocolName string `json:"protocol_name"`
}

type ocsfDNSQuery struct {
	Hostname string `json:"hostname"`
	Type     string `json:"type,omitempty"`
}

type ocsfDNSAnswer struct {
	Rdata string `json:"rdata"`
}

type ocsfHTTPRequest struct {
	HTTPMethod string  `json:"http_method,omitempty"`
	URL        ocsfURL `json:"url"`
}

type ocsfURL struct {
	URLString string `json:"url_string"`
	Hostname  string `json:"hostname,omitempty"`
	Path      string `json:"path,omitempty"`
	Port      int    `json:"port,omitempty"`
	Scheme    string `json:"scheme,omitempty"`
}

type ocsfUnmapped struct {
	Clawrun Record `json:"clawrun"`
}

// httpActivities are the HTTP Activity class's activity ids by method.
var httpActivities = map[string]int{
	"CONNECT": 1, "DELETE": 2, "GET": 3, "HEAD": 4, "OPTIONS": 5, "POST": 6, "PUT": 7, "TRACE": 8, "PATCH": 9,
}

// encodeOCSF is r as one OCSF event.
func encodeOCSF(r Record) ([]byte, error) {
	e := ocsfEvent{
		CategoryUID: ocsfCategoryNetwork,
		Time:        r.Time.UnixMilli(),
		SeverityID:  1, // informational
		Metadata:    ocsfMetadata{Version: ocsfVersion, Product: ocsfProduct{Name: "clawrun", VendorName: "clawrun"}},
		Status:      string(r.Reason),
		DurationMS:  int64(r.DurationMS),
		Unmapped:    ocsfUnmapped{Clawrun: r},
	}
	e.ActionID, e.Action, e.DispositionID = ocsfAction(r.Decision)
	if r.Aggregated > 0 || r.Dropped > 0 {
		e.Count, e.StartTime = r.Aggregated+r.Dropped, r.Since.UnixMilli()
	}
	e.SrcEndpoint = endpointOf(r.Source)
	if e.SrcEndpoint == nil {
		e.SrcEndpoint = &ocsfEndpoint{}
	}
	e.SrcEndpoint.Name = r.Container
	switch {
	case r.Protocol == "dns" && r.Decision != "dropped":
		e.ClassUID, e.ActivityID, e.ActivityName = ocsfDNSActivity, 1, "Query"
		e.Query = &ocsfDNSQuery{Hostname: r.Host, Type: r.QueryType}
		if e.Query.Hostname == "" {
			e.Query.Hostname = "."
		}
		if r.ResolvedIP != "" {
			e.Answers = []ocsfDNSAnswer{{Rdata: r.ResolvedIP}}
		}
		e.DstEndpoint = endpointOf(r.Destination)
	case r.Protocol == "http" || (r.Protocol == "https" && r.Method != ""):
		// Plain HTTP is decided on its requests, each HTTPS request of an
		// inspected connection too.
		e.ClassUID = ocsfHTTPActivity
		e.ActivityID, e.ActivityName = httpActivity(r.Method)
		e.HTTPRequest = &ocsfHTTPRequest{HTTPMethod: r.Method, URL: urlOf(r)}
		e.HTTPStatus = r.Status
		e.DstEndpoint = destination(r)
	default:
		e.ClassUID = ocsfNetworkActivity
		e.ActivityID, e.ActivityName = networkActivity(r)
		e.DstEndpoint = destination(r)
		e.ConnectionInf = &ocsfConnection{DirectionID: 2, ProtocolName: "tcp"}
	}
	if r.BytesIn+r.BytesOut > 0 {
		e.Traffic = &ocsfTraffic{BytesOut: r.BytesOut, BytesIn: r.BytesIn}
	}
	e.TypeUID = e.ClassUID*100 + e.ActivityID
	e.Message = ocsfMessage(r)
	e.StatusDetail = r.Detail
	return json.Marshal(e)
}

// ocsfAction maps a decision to the security control profile's action
// and disposition.
func ocsfAction(decision string) (actionID int, action string, dispositionID int) {
	switch decision {
	case "allow":
		return 1, "Allowed", 1
	case "deny":
		return 2, "Denied", 2
	case "audit":
		return 1, "Allowed", 17 // logged: what audit mode waived
	case "dropped":
		return 99, "Other", 6
	}
	return 0, "Unknown", 0
}

// networkActivity: an allowed connection is logged when it closes, a
// denied one when it is refused; the log's own lines are "other".
func networkActivity(r Record) (int, string) {
	switch r.Decision {
	case "allow", "audit":
		return 2, "Close"
	case "deny":
		return 5, "Refuse"
	}
	return 99, "Other"
}

// httpActivity is the activity of a request's method; a plain HTTP
// connection's own record (its requests have theirs) is "other".
func httpActivity(method string) (int, string) {
	if id, ok := httpActivities[strings.ToUpper(method)]; ok {
		return id, strings.ToUpper(method)
	}
	return 99, "Other"
}

// destination is where a connection went: the name it asked for and the
// address and port.
func destination(r Record) *ocsfEndpoint {
	e := endpointOf(r.Destination)
	if e == nil {
		e = &ocsfEndpoint{}
	}
	if r.Host != "" {
		e.Hostname = r.Host
	}
	if r.Port != 0 {
		e.Port = r.Port
	}
	if r.ResolvedIP != "" {
		e.IP = r.ResolvedIP
	}
	if *e == (ocsfEndpoint{}) {
		return nil
	}
	return e
}

// endpointOf parses "ip:port", nil when it is not one.
func endpointOf(addr string) *ocsfEndpoint {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil
	}
	return &ocsfEndpoint{IP: ap.Addr().Unmap().String(), Port: int(ap.Port())}
}

// urlOf is the URL a request asked for, as far as the record knows it
// (a plain HTTP connection's record has no path).
func urlOf(r Record) ocsfURL {
	u := ocsfURL{Scheme: r.Protocol, Hostname: r.Host, Port: r.Port, Path: r.Path}
	u.URLString = r.Protocol + "://" + r.Host
	if r.Port != 0 {
		u.URLString += ":" + strconv.Itoa(r.Port)
	}
	u.URLString += r.Path
	return u
}

// ocsfMessage says the decision in words.
func ocsfMessage(r Record) string {
	if r.Dropped > 0 {
		return strconv.FormatInt(r.Dropped, 10) + " decisions not logged: the log's rate limit"
	}
	target := r.Host
	if target == "" {
		target = r.Destination
	}
	msg := r.Protocol + " " + target + ": " + r.Decision + " (" + string(r.Reason) + ")"
	if r.Aggregated > 0 {
		msg += ", " + strconv.FormatInt(r.Aggregated, 10) + " more like it aggregated"
	}
	return msg
}

// decodeLine reads one line of either format. An OCSF event (a plain
// Record has no class_uid key; one inside a string is escaped) gives back
// the Record it carries.
func decodeLine(line []byte) (Record, bool) {
	if bytes.Contains(line, []byte(`"class_uid":`)) {
		var e struct {
			Unmapped *ocsfUnmapped `json:"unmapped"`
		}
		if json.Unmarshal(line, &e) != nil || e.Unmapped == nil {
			return Record{}, false
		}
		return e.Unmapped.Clawrun, true
	}
	var r Record
	if json.Unmarshal(line, &r) != nil {
		return Record{}, false
	}
	return r, true
}
