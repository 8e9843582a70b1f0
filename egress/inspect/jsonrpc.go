package inspect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// RPC is what a JSON-RPC 2.0 request body asks for: MCP's streamable HTTP
// transport and JSON-RPC over HTTP post one message or a batch (an array)
// of them. Policies name methods and MCP tools, so these are what Decide
// gets to see.
type RPC struct {
	// Batch: the body was an array of messages.
	Batch bool
	// Calls are the requests and notifications, in the body's order.
	Calls []Call
	// Responses counts the response objects the client sent (an MCP
	// client answering a server's request, e.g. sampling); they name no
	// method.
	Responses int
}

// Call is one JSON-RPC request or notification.
type Call struct {
	Method string `json:"method"`
	// Tool is params.name of an MCP tools/call: the tool it runs.
	Tool string `json:"tool,omitempty"`
	// ID is the request's id as sent (a JSON string, number or null); nil
	// for a notification, which gets no answer.
	ID json.RawMessage `json:"id,omitempty"`
}

// ErrRPC: a body that was to be inspected is not JSON-RPC 2.0 that can be
// read one way only. It is refused whole: a message the filter reads
// differently from the server would let a denied call through.
var ErrRPC = errors.New("inspect: not a JSON-RPC 2.0 body")

// mcpToolCall is the MCP method whose params.name is the tool it runs.
const mcpToolCall = "tools/call"

// Member names of a JSON-RPC message (and of tools/call's params) that are
// read. Any other spelling of them (another case, or a Unicode character
// that folds to one of theirs) is refused with them, never skipped: some
// decoders (Go's encoding/json, for one) match member names without
// regard to case, and take the last of duplicates, where others take the
// first.
var (
	messageMembers = []string{"jsonrpc", "method", "id", "params", "result", "error"}
	paramsMembers  = []string{"name"}
)

// ParseRPC reads a JSON-RPC 2.0 body strictly: valid UTF-8, one JSON value
// (an object, or a non-empty array of objects) with nothing after it,
// "jsonrpc": "2.0" in every message, a string method, an id that is a
// string, a number or null, no member read by the filter spelt twice or
// in another case, and a string params.name in every tools/call. Any
// other body is ErrRPC.
func ParseRPC(body []byte) (*RPC, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrRPC)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	rpc := &RPC{}
	switch first := firstByte(body); first {
	case '{':
		if err := rpc.readMessage(dec); err != nil {
			return nil, err
		}
	case '[':
		rpc.Batch = true
		if err := rpc.readBatch(dec); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: not a JSON object or array", ErrRPC)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON value", ErrRPC)
	}
	return rpc, nil
}

// firstByte is the first byte of body that is not JSON whitespace (0 if
// none).
func firstByte(body []byte) byte {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}

func (rpc *RPC) readBatch(dec *json.Decoder) error {
	if _, err := dec.Token(); err != nil { // '['
		return fmt.Errorf("%w: %v", ErrRPC, err)
	}
	n := 0
	for dec.More() {
		if err := rpc.readMessage(dec); err != nil {
			return fmt.Errorf("batch element %d: %w", n, err)
		}
		n++
	}
	if _, err := dec.Token(); err != nil { // ']'
		return fmt.Errorf("%w: %v", ErrRPC, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: empty batch", ErrRPC)
	}
	return nil
}

// message is the members of one message that are read.
type message struct {
	version, method string
	id, params      json.RawMessage
	hasVersion      bool
	hasMethod       bool
	hasResult       bool
	hasError        bool
}

// readMessage reads one message object and adds it to rpc.
func (rpc *RPC) readMessage(dec *json.Decoder) error {
	var m message
	err := readObject(dec, messageMembers, func(name string) error {
		var err error
		switch name {
		case "jsonrpc":
			m.version, err = readString(dec)
			m.hasVersion = true
		case "method":
			m.method, err = readString(dec)
			m.hasMethod = true
		case "id":
			m.id, err = readID(dec)
		case "params":
			m.params, err = readRaw(dec)
		case "result":
			m.hasResult = true
			err = skipValue(dec)
		case "error":
			m.hasError = true
			err = skipValue(dec)
		}
		return err
	})
	if err != nil {
		return err
	}
	if !m.hasVersion || m.version != "2.0" {
		return fmt.Errorf(`%w: "jsonrpc" is not "2.0"`, ErrRPC)
	}
	switch {
	case m.hasMethod && !m.hasResult && !m.hasError:
		call := Call{Method: m.method, ID: m.id}
		if strings.EqualFold(m.method, mcpToolCall) {
			if call.Tool, err = toolName(m.params); err != nil {
				return err
			}
		}
		rpc.Calls = append(rpc.Calls, call)
	case !m.hasMethod && m.hasResult != m.hasError && m.id != nil:
		rpc.Responses++
	default:
		return fmt.Errorf("%w: neither a request nor a response", ErrRPC)
	}
	return nil
}

// toolName is params.name of a tools/call.
func toolName(params json.RawMessage) (string, error) {
	if firstByte(params) != '{' {
		return "", fmt.Errorf("%w: tools/call without params.name", ErrRPC)
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.UseNumber()
	var name string
	found := false
	err := readObject(dec, paramsMembers, func(string) error {
		var err error
		name, err = readString(dec)
		found = true
		return err
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("%w: tools/call without params.name", ErrRPC)
	}
	return name, nil
}

// readObject reads a JSON object from dec, calling read for each member
// named in known (read must consume its value) and skipping the others. A
// known member given twice, or spelt otherwise than in known but equal to
// it under Unicode case folding, is an error.
func readObject(dec *json.Decoder, known []string, read func(name string) error) error {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("%w: a message is not a JSON object", ErrRPC)
	}
	var seen uint64 // bit i: known[i] was read
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrRPC, err)
		}
		name := tok.(string) // object keys are strings
		i := foldIndex(known, name)
		if i < 0 {
			if err := skipValue(dec); err != nil {
				return err
			}
			continue
		}
		if known[i] != name {
			return fmt.Errorf("%w: member %q is a variant of %q", ErrRPC, name, known[i])
		}
		if seen&(1<<i) != 0 {
			return fmt.Errorf("%w: member %q given twice", ErrRPC, name)
		}
		seen |= 1 << i
		if err := read(name); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("%w: %v", ErrRPC, err)
	}
	return nil
}

// foldIndex is the index in names of the one equal to s under Unicode case
// folding, -1 if none.
func foldIndex(names []string, s string) int {
	for i, n := range names {
		if strings.EqualFold(n, s) {
			return i
		}
	}
	return -1
}

func readString(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrRPC, err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%w: a string member holds %v", ErrRPC, tok)
	}
	return s, nil
}

// readID reads an id: a string, a number or null (JSON-RPC 2.0, 4).
func readID(dec *json.Decoder) (json.RawMessage, error) {
	raw, err := readRaw(dec)
	if err != nil {
		return nil, err
	}
	switch c := raw[0]; {
	case c == '"', c == '-', '0' <= c && c <= '9', string(raw) == "null":
		return raw, nil
	}
	return nil, fmt.Errorf("%w: id is neither a string, a number nor null", ErrRPC)
}

func skipValue(dec *json.Decoder) error {
	_, err := readRaw(dec)
	return err
}

// readRaw reads the next JSON value as it is.
func readRaw(dec *json.Decoder) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRPC, err)
	}
	return raw, nil
}
