package inspect

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseRPC(t *testing.T) {
	tests := []struct {
		name string
		body string
		want RPC
	}{
		{"request", `{"jsonrpc":"2.0","method":"tools/list","id":1}`,
			RPC{Calls: []Call{{Method: "tools/list", ID: json.RawMessage(`1`)}}}},
		{"tool call", `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"arguments":{"name":"decoy"},"name":"search_web"}}`,
			RPC{Calls: []Call{{Method: "tools/call", Tool: "search_web", ID: json.RawMessage(`"a"`)}}}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			RPC{Calls: []Call{{Method: "notifications/initialized"}}}},
		{"null id", `{"jsonrpc":"2.0","method":"m","id":null}`,
			RPC{Calls: []Call{{Method: "m", ID: json.RawMessage(`null`)}}}},
		{"escaped member names", `{"\u006asonrpc":"2.0","\u006dethod":"tools/call","params":{"n\u0061me":"t"},"id":2}`,
			RPC{Calls: []Call{{Method: "tools/call", Tool: "t", ID: json.RawMessage(`2`)}}}},
		{"batch", ` [{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"},"id":1},
			{"jsonrpc":"2.0","method":"notifications/x"},
			{"jsonrpc":"2.0","id":7,"result":{}}] `,
			RPC{Batch: true, Responses: 1, Calls: []Call{
				{Method: "tools/call", Tool: "a", ID: json.RawMessage(`1`)},
				{Method: "notifications/x"},
			}}},
		{"response only", `{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}`, RPC{Responses: 1}},
		{"unknown members skipped", `{"jsonrpc":"2.0","method":"m","x":[{"method":"tools/call"}],"id":1}`,
			RPC{Calls: []Call{{Method: "m", ID: json.RawMessage(`1`)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRPC([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got %+v, want %+v", *got, tt.want)
			}
		})
	}
}

// Bodies another parser could read differently, or that are not
// JSON-RPC, are refused.
func TestParseRPCRefuses(t *testing.T) {
	for name, body := range map[string]string{
		"duplicate method":           `{"jsonrpc":"2.0","method":"tools/list","method":"tools/call","params":{"name":"x"},"id":1}`,
		"method in another case":     `{"jsonrpc":"2.0","method":"tools/list","Method":"tools/call","id":1}`,
		"method folded (long s)":     `{"jsonrpc":"2.0","method":"tools/list","id":1,"paramſ":{}}`,
		"params folded (kelvin)":     `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"},"id":1,"\u212aey":1,"PARAMS":{"name":"b"}}`,
		"duplicate tool name":        `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"ok","name":"evil"},"id":1}`,
		"tool name in another case":  `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"ok","Name":"evil"},"id":1}`,
		"tools/call without name":    `{"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{}},"id":1}`,
		"tools/call name not string": `{"jsonrpc":"2.0","method":"tools/call","params":{"name":["a"]},"id":1}`,
		"tools/call params array":    `{"jsonrpc":"2.0","method":"tools/call","params":["a"],"id":1}`,
		"TOOLS/CALL without name":    `{"jsonrpc":"2.0","method":"TOOLS/CALL","params":{},"id":1}`,
		"no version":                 `{"method":"m","id":1}`,
		"version 1":                  `{"jsonrpc":"1.0","method":"m","id":1}`,
		"version not string":         `{"jsonrpc":2.0,"method":"m","id":1}`,
		"method not string":          `{"jsonrpc":"2.0","method":1,"id":1}`,
		"id object":                  `{"jsonrpc":"2.0","method":"m","id":{}}`,
		"id bool":                    `{"jsonrpc":"2.0","method":"m","id":true}`,
		"method and result":          `{"jsonrpc":"2.0","method":"m","result":1,"id":1}`,
		"result and error":           `{"jsonrpc":"2.0","result":1,"error":{},"id":1}`,
		"response without id":        `{"jsonrpc":"2.0","result":1}`,
		"neither":                    `{"jsonrpc":"2.0","id":1}`,
		"empty batch":                `[]`,
		"batch of non-objects":       `[1]`,
		"batch with a bad element":   `[{"jsonrpc":"2.0","method":"m","id":1},{"jsonrpc":"2.0"}]`,
		"trailing data":              `{"jsonrpc":"2.0","method":"m","id":1} {"jsonrpc":"2.0","method":"tools/call","id":2}`,
		"trailing garbage":           `{"jsonrpc":"2.0","method":"m","id":1}x`,
		"not UTF-8":                  "{\"jsonrpc\":\"2.0\",\"method\":\"m\xff\",\"id\":1}",
		"string":                     `"tools/call"`,
		"empty":                      ``,
		"truncated":                  `{"jsonrpc":"2.0","method":"m"`,
		"nested batch":               `[[{"jsonrpc":"2.0","method":"m","id":1}]]`,
	} {
		if got, err := ParseRPC([]byte(body)); !errors.Is(err, ErrRPC) {
			t.Errorf("%s: got %+v, %v; want ErrRPC", name, got, err)
		}
	}
}

// FuzzParseRPC: whatever the body, ParseRPC does not panic, and what it
// accepts reads the same to Go's encoding/json, whether it matches member
// names exactly (into maps) or without regard to case (into structs, as
// Go servers do): the method and tool a policy sees are the server's.
func FuzzParseRPC(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"},"id":1}`,
		`[{"jsonrpc":"2.0","method":"m","id":"x"},{"jsonrpc":"2.0","id":1,"result":null}]`,
		`{"jsonrpc":"2.0","method":"m","Method":"n"}`,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a","NAME":"b"},"id":1}`,
		`{"jsonrpc":"2.0","\u006dethod":"m"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rpc, err := ParseRPC(body)
		if err != nil {
			if !errors.Is(err, ErrRPC) {
				t.Fatalf("error %v is not ErrRPC", err)
			}
			return
		}
		var messages []json.RawMessage
		if rpc.Batch {
			if err := json.Unmarshal(body, &messages); err != nil {
				t.Fatalf("accepted a batch encoding/json refuses: %v", err)
			}
		} else {
			messages = []json.RawMessage{body}
		}
		if len(messages) != len(rpc.Calls)+rpc.Responses {
			t.Fatalf("%d messages, %d calls and %d responses", len(messages), len(rpc.Calls), rpc.Responses)
		}
		calls := rpc.Calls
		for _, m := range messages {
			var exact map[string]json.RawMessage
			var folded struct {
				Method string
				Params struct{ Name string }
			}
			if err := json.Unmarshal(m, &exact); err != nil {
				t.Fatalf("accepted a message encoding/json refuses: %v", err)
			}
			if _, ok := exact["method"]; !ok {
				continue // a response
			}
			if err := json.Unmarshal(m, &folded); err != nil {
				if !strings.EqualFold(calls[0].Method, mcpToolCall) {
					// params of other methods may be anything (an array).
					folded.Method = calls[0].Method
					folded.Params.Name = calls[0].Tool
				} else {
					t.Fatalf("accepted a message encoding/json cannot read: %v", err)
				}
			}
			var method string
			json.Unmarshal(exact["method"], &method)
			c := calls[0]
			calls = calls[1:]
			if c.Method != method || c.Method != folded.Method {
				t.Fatalf("method %q; encoding/json reads %q exactly, %q folded", c.Method, method, folded.Method)
			}
			if c.Tool != "" && c.Tool != folded.Params.Name {
				t.Fatalf("tool %q; encoding/json reads %q", c.Tool, folded.Params.Name)
			}
		}
	})
}
