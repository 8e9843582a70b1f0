package inspect

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// mcpPolicy inspects /mcp as JSON-RPC and allows initialize, tools/list and
// the tool "search"; it refuses other tools by their index.
func mcpHarness(t *testing.T, h2 bool) (*harness, *upstream) {
	up := newUpstream(t, h2, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	})
	h := newHarness(t, up)
	h.inspectRPC = func(r Request) bool { return r.Path == "/mcp" }
	h.decide = func(r Request) Verdict {
		if r.RPC == nil {
			t.Errorf("Decide got %s %s without its JSON-RPC", r.Method, r.Path)
			return Verdict{}
		}
		var denied []int
		for i, c := range r.RPC.Calls {
			switch {
			case c.Method == "tools/call" && c.Tool == "search":
			case c.Method == "initialize", c.Method == "tools/list", c.Method == "notifications/initialized":
			default:
				denied = append(denied, i)
			}
		}
		if len(denied) > 0 {
			return Verdict{Rule: "mcp-policy", Reason: "tool", DeniedCalls: denied}
		}
		return Verdict{Allow: true, Rule: "mcp-policy"}
	}
	return h, up
}

func postMCP(t *testing.T, client *http.Client, body string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Post("https://"+testHost+"/mcp", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(t, resp.Body)
}

// A batch with one refused tools/call is refused whole (OpenShell's rule:
// one denied call denies the batch): the client gets a JSON-RPC error for
// every id, the refused call's naming the rule, the others saying they
// were not sent; nothing reaches the upstream.
func TestMCPBatchWithADeniedToolCall(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprint("h2=", h2), func(t *testing.T) {
			h, up := mcpHarness(t, h2)
			client := h.h1Client()
			if h2 {
				client = h.h2Client()
			}
			resp, body := postMCP(t, client, `[
				{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}},
				{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"delete_repo","arguments":{}}},
				{"jsonrpc":"2.0","method":"notifications/initialized"}]`)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			var answers []rpcResponse
			if err := json.Unmarshal([]byte(body), &answers); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if len(answers) != 2 || string(answers[0].ID) != `1` || string(answers[1].ID) != `"b"` {
				t.Fatalf("answers %s", body)
			}
			if e := answers[1].Error; e.Code != RPCCodeDenied || e.Data.Rule != "mcp-policy" || !strings.Contains(e.Data.Detail, "delete_repo") {
				t.Fatalf("the denied call's error: %+v", e)
			}
			if e := answers[0].Error; e.Code != RPCCodeWithheld {
				t.Fatalf("the allowed call's error: %+v", e)
			}
			if n := up.requests.Load(); n != 0 {
				t.Fatalf("the upstream saw %d requests", n)
			}
			d := h.logs.find(t, "tool")
			if d.Allow || d.Status != 200 || len(d.Calls) != 3 || len(d.DeniedCalls) != 1 || d.DeniedCalls[0] != 1 {
				t.Fatalf("logged %+v", d)
			}
			// The control, on the same connection: an allowed call is sent
			// as it was read.
			call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"é"}}}`
			resp, body = postMCP(t, client, call)
			if resp.StatusCode != 200 || body != `{"jsonrpc":"2.0","id":1,"result":{}}` {
				t.Fatalf("allowed call: %d %s", resp.StatusCode, body)
			}
			if seen := up.lastRequest(); up.requests.Load() != 1 || seen.Body != call {
				t.Fatalf("upstream saw %d requests, body %q", up.requests.Load(), seen.Body)
			}
			if h.accepts.Load() != 1 {
				t.Fatalf("%d client connections", h.accepts.Load())
			}
		})
	}
}

// A single refused call gets one error object for its id; refused
// notifications (nothing to answer in JSON-RPC) a 403.
func TestMCPSingleDenials(t *testing.T) {
	h, up := mcpHarness(t, false)
	client := h.h1Client()
	resp, body := postMCP(t, client, `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"rm"}}`)
	var ans rpcResponse
	if err := json.Unmarshal([]byte(body), &ans); err != nil || resp.StatusCode != 200 || string(ans.ID) != "42" || ans.Error.Code != RPCCodeDenied {
		t.Fatalf("%d %s (%v)", resp.StatusCode, body, err)
	}
	resp, _ = postMCP(t, client, `{"jsonrpc":"2.0","method":"notifications/other"}`)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("refused notification: %d, want 403", resp.StatusCode)
	}
	if up.requests.Load() != 0 {
		t.Fatalf("the upstream saw %d requests", up.requests.Load())
	}
}

// A body to inspect that cannot be read one way, or is too large, is
// refused before Decide; a chunked one is read and sent with its length.
func TestMCPBodyRefusals(t *testing.T) {
	h, up := mcpHarness(t, false)
	h.engine.maxRPCBody = 200
	decided := 0
	decide := h.decide
	h.decide = func(r Request) Verdict { decided++; return decide(r) }
	c := h.dial(protoHTTP1)
	br := bufio.NewReader(c)
	post := func(headers, body string) *http.Response {
		return roundTrip(t, c, br, "POST /mcp HTTP/1.1\r\nHost: "+testHost+"\r\n"+headers+"\r\n"+body)
	}
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"` + strings.Repeat("x", 200) + `"}}`
	length := func(body string) string { return fmt.Sprintf("Content-Length: %d\r\n", len(body)) }
	duplicate := `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`
	tests := []struct {
		name, headers, body string
		status              int
		reason              string
	}{
		{"too large", length(big), big, 413, ReasonBodyTooLarge},
		{"too large, chunked", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big), 413, ReasonBodyTooLarge},
		{"not JSON-RPC", length("{}"), "{}", 400, ReasonRPCInvalid},
		{"duplicate method", length(duplicate), duplicate, 400, ReasonRPCInvalid},
		{"compressed", "Content-Encoding: gzip\r\n" + length("abc"), "abc", 415, ReasonRPCInvalid},
	}
	for _, tt := range tests {
		resp := post(tt.headers, tt.body)
		if resp.StatusCode != tt.status {
			t.Fatalf("%s: %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
		if d := h.logs.all(); d[len(d)-1].Reason != tt.reason {
			t.Fatalf("%s: logged %+v, want reason %s", tt.name, d[len(d)-1], tt.reason)
		}
		if resp.Close {
			c = h.dial(protoHTTP1)
			br = bufio.NewReader(c)
		}
	}
	if decided != 0 || up.requests.Load() != 0 {
		t.Fatalf("Decide asked %d times, upstream saw %d requests; want none", decided, up.requests.Load())
	}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	resp := post("Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(call), call))
	if resp.StatusCode != 200 || up.lastRequest().Body != call || up.lastRequest().Header.Get("Content-Length") != fmt.Sprint(len(call)) {
		t.Fatalf("chunked call: %d, upstream %+v", resp.StatusCode, up.lastRequest())
	}
}

// The engine holds at most rpcBodiesAtOnce bodies: one more waits (here
// until its client gives up, never reaching Decide), and every body gives
// its place back once sent or refused.
func TestRPCBodiesHeldAtOnceBounded(t *testing.T) {
	h, up := mcpHarness(t, true)
	decided := 0
	decide := h.decide
	h.decide = func(r Request) Verdict { decided++; return decide(r) }
	client := h.h2Client()
	for range rpcBodiesAtOnce {
		h.engine.rpcBodies <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+testHost+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a body beyond the bound was served: %d", resp.StatusCode)
	}
	if d := h.logs.find(t, ReasonCanceled); d.Allow || decided != 0 || up.requests.Load() != 0 {
		t.Fatalf("logged %+v, decided %d, upstream saw %d", d, decided, up.requests.Load())
	}
	for range rpcBodiesAtOnce {
		<-h.engine.rpcBodies
	}

	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,                                                      // allowed
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}`,                               // denied
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`,                                  // invalid
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","x":"` + strings.Repeat("y", DefaultMaxRPCBody) + `"}`, // too large
	}
	for range 10 {
		for _, b := range bodies {
			resp, _ := postMCP(t, client, b)
			if resp.StatusCode == 0 {
				t.Fatal("no answer")
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.engine.rpcBodies) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bodies still held after every request was answered", len(h.engine.rpcBodies))
		}
		time.Sleep(time.Millisecond)
	}
}
