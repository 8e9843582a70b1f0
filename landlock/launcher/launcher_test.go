package launcher

import (
	"bytes"
	"strings"
	"testing"
)

// TestDecodeSpecRefusesUnknownFields: a spec with a field this launcher
// does not know (a part of the policy it would leave out) fails to decode;
// what Encode writes decodes to the same spec.
func TestDecodeSpecRefusesUnknownFields(t *testing.T) {
	spec := &Spec{Strict: true, Seccomp: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ReportFD: 4, ExeFD: 5}
	env, err := Encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSpec(strings.TrimPrefix(env, EnvVar+"="))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Strict || !bytes.Equal(got.Seccomp, spec.Seccomp) || got.ReportFD != 4 || got.ExeFD != 5 {
		t.Errorf("decoded %+v, want %+v", got, spec)
	}
	for _, data := range []string{
		`{"layers":[],"strict":false,"seccomp":{"default_action":2},"report_fd":-1,"exe_fd":-1}`,
		`{"layers":[],"report_fd":-1,"exe_fd":-1,"network":[]}`,
	} {
		if _, err := decodeSpec(data); err == nil {
			t.Errorf("%s: decoded", data)
		}
	}
}
