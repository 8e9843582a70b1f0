package policy

import (
	"strings"
	"testing"
)

func TestParseConfigLogFormat(t *testing.T) {
	for doc, want := range map[string]string{
		"egress: {}":                    "",
		"egress: {log_format: clawrun}": LogFormatClawrun,
		"egress: {log_format: ocsf}":    LogFormatOCSF,
	} {
		c, err := ParseConfig("c", []byte(doc))
		if err != nil {
			t.Fatalf("ParseConfig(%q): %v", doc, err)
		}
		if c.Egress.LogFormat != want {
			t.Errorf("ParseConfig(%q): log_format %q, want %q", doc, c.Egress.LogFormat, want)
		}
	}
	_, err := ParseConfig("c", []byte("egress: {log_format: cef}"))
	if want := `c:1: egress.log_format: "cef": want clawrun or ocsf`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("an unknown log_format: %v, want %q", err, want)
	}
}
