package inference

import (
	"net/http"
	"reflect"
	"testing"
)

func TestRewriteFiltersAndInjects(t *testing.T) {
	rt := &Route{BackendHost: "models.example.com", BackendPort: 443, Credential: "MODEL_KEY",
		KeyHeader: "Authorization", KeyPrefix: "Bearer ",
		Forward: []string{"Content-Type", "Accept", "Anthropic-Version", "Authorization"}}
	r, _ := http.NewRequest("POST", "https://inference.local/v1/messages", nil)
	r.Header.Set("Authorization", "Bearer agent-own-key")
	r.Header.Set("X-Api-Key", "agent-api-key")
	r.Header.Set("Cookie", "session=1")
	r.Header.Set("Content-Type", "application/json")
	r.Header.Add("Accept", "text/event-stream")
	r.Header.Add("Accept", "application/json")
	r.Header.Set("Anthropic-Version", "2023-06-01")
	r.Header.Set("X-Forwarded-For", "10.0.0.2")
	keys := map[string]string{"MODEL_KEY": "backend-secret"}
	if err := rt.Rewrite(r, func(n string) (string, bool) { v, ok := keys[n]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	want := http.Header{
		"Authorization":     {"Bearer backend-secret"},
		"Content-Type":      {"application/json"},
		"Accept":            {"text/event-stream", "application/json"},
		"Anthropic-Version": {"2023-06-01"},
	}
	if !reflect.DeepEqual(r.Header, want) {
		t.Errorf("headers %v, want %v", r.Header, want)
	}
}

func TestRewriteKeyHeader(t *testing.T) {
	// x-api-key style: the agent's Authorization goes nowhere, its own
	// x-api-key is replaced.
	rt := &Route{Credential: "K", KeyHeader: "X-Api-Key", Forward: []string{"Content-Type"}}
	r, _ := http.NewRequest("POST", "https://inference.local/v1/messages", nil)
	r.Header.Set("Authorization", "Bearer agent")
	r.Header.Set("X-Api-Key", "agent")
	if err := rt.Rewrite(r, func(string) (string, bool) { return "s3cret", true }); err != nil {
		t.Fatal(err)
	}
	if want := (http.Header{"X-Api-Key": {"s3cret"}}); !reflect.DeepEqual(r.Header, want) {
		t.Errorf("headers %v, want %v", r.Header, want)
	}
}

func TestRewriteRefusesWithoutKey(t *testing.T) {
	rt := &Route{Credential: "K", KeyHeader: "Authorization", KeyPrefix: "Bearer ", Forward: []string{"Authorization"}}
	r, _ := http.NewRequest("POST", "https://inference.local/", nil)
	r.Header.Set("Authorization", "Bearer agent")
	if err := rt.Rewrite(r, func(string) (string, bool) { return "", false }); err != ErrNoKey {
		t.Fatalf("err %v, want ErrNoKey", err)
	}
	if r.Header.Get("Authorization") != "" {
		t.Errorf("the agent's Authorization kept: %v", r.Header)
	}
	// No credential configured: nothing is injected, the agent's key
	// still does not pass.
	rt.Credential = ""
	r.Header.Set("Authorization", "Bearer agent")
	if err := rt.Rewrite(r, nil); err != nil || len(r.Header) != 0 {
		t.Errorf("err %v headers %v", err, r.Header)
	}
}
