package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseConfigInference(t *testing.T) {
	const creds = "\n  credentials: [{name: MODEL_KEY, env: MODEL_KEY, endpoints: [{host: models.example.com, ports: [443, 8443]}]}]"
	c, err := ParseConfig("c", []byte("egress:\n  inference: {base_url: 'https://models.example.com/', credential: MODEL_KEY}"+creds))
	if err != nil {
		t.Fatal(err)
	}
	want := &Inference{BaseURL: "https://models.example.com", Credential: "MODEL_KEY", KeyHeader: "Authorization",
		KeyPrefix: "Bearer ", ForwardHeaders: DefaultInferenceHeaders}
	if !reflect.DeepEqual(c.Egress.Inference, want) {
		t.Errorf("got %+v\nwant %+v", c.Egress.Inference, want)
	}
	if h, p := c.Egress.Inference.BackendHostPort(); h != "models.example.com" || p != 443 {
		t.Errorf("backend %s:%d", h, p)
	}

	c, err = ParseConfig("c", []byte("egress:\n  inference: {base_url: 'https://models.example.com:8443', credential: MODEL_KEY, key_header: x-api-key, forward_headers: [content-type]}"+creds))
	if err != nil {
		t.Fatal(err)
	}
	want = &Inference{BaseURL: "https://models.example.com:8443", Credential: "MODEL_KEY", KeyHeader: "X-Api-Key", ForwardHeaders: []string{"Content-Type"}}
	if !reflect.DeepEqual(c.Egress.Inference, want) {
		t.Errorf("got %+v\nwant %+v", c.Egress.Inference, want)
	}
	if c, err := ParseConfig("c", []byte("egress: {}")); err != nil || c.Egress.Inference != nil {
		t.Errorf("no inference: %+v %v", c, err)
	}

	for _, tc := range []struct{ doc, want string }{
		{"egress: {inference: {credential: MODEL_KEY}}", "c:1: egress.inference.base_url: missing"},
		{"egress: {inference: {base_url: 'http://models.example.com'}}", `c:1: egress.inference.base_url: "http://models.example.com": must be an https:// URL`},
		{"egress: {inference: {base_url: 'https://models.example.com/v1'}}", "must have no path"},
		{"egress: {inference: {base_url: 'https://u:p@models.example.com'}}", "no user, query or fragment"},
		{"egress: {inference: {base_url: 'https://10.0.0.1'}}", "the host must be a name"},
		{"egress: {inference: {base_url: 'https://inference.local'}}", "cannot be inference.local itself"},
		{"egress: {inference: {base_url: 'https://models.example.com', key_header: 'a b'}}", `c:1: egress.inference.key_header: "a b": not a header field name`},
		{"egress: {inference: {base_url: 'https://models.example.com', forward_headers: ['x:y']}}", `egress.inference.forward_headers[0]: "x:y": not a header field name`},
		{"egress: {inference: {base_url: 'https://models.example.com', key: s3cret}}", `c:1: egress.inference.key: unknown key "key"`},
		{"egress: {inference: {base_url: 'https://models.example.com', credential: NOPE}}", `c:1: egress.inference.credential: "NOPE": no such entry in egress.credentials`},
		// The key goes only where its credential is bound.
		{"egress:\n  inference: {base_url: 'https://other.example.com', credential: MODEL_KEY}" + creds, `c:2: egress.inference.credential: credential "MODEL_KEY" is not bound to the backend other.example.com:443`},
		{"egress:\n  inference: {base_url: 'https://models.example.com:9443', credential: MODEL_KEY}" + creds, `is not bound to the backend models.example.com:9443`},
	} {
		_, err := ParseConfig("c", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%q) = %v, want %q", tc.doc, err, tc.want)
		}
	}
}
