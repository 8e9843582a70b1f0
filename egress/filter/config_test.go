package filter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigRefusesUnknownFields(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"netns":"/proc/1/ns/net","proxy_port":15001}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(good)
	if err != nil || c.Netns != "/proc/1/ns/net" || c.ProxyPort != 15001 {
		t.Fatalf("LoadConfig(good) = %+v, %v", c, err)
	}
	// A newer clawrun's setting that this filter would not know about.
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"netns":"/proc/1/ns/net","tls_termination":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), "tls_termination") {
		t.Fatalf("LoadConfig(unknown field) = %v, want an error naming it", err)
	}
}
