package policy

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// wantLine is "# want: LINE: TEXT": the error NAME:LINE: TEXT... must be
// reported (LINE 0: an error with no line).
var wantLine = regexp.MustCompile(`(?m)^# want: (\d+): (.*)$`)

func TestParseBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := wantLine.FindAllStringSubmatch(string(data), -1)
			if len(wants) == 0 {
				t.Fatal("no # want: line")
			}
			p, err := Parse(name, data)
			if err == nil {
				t.Fatalf("parsed: %+v", p)
			}
			list, ok := AsErrorList(err)
			if !ok {
				t.Fatalf("error is %T, not an ErrorList", err)
			}
			if len(list) != len(wants) {
				t.Errorf("got %d errors, want %d:\n%v", len(list), len(wants), err)
			}
			for _, w := range wants {
				n, _ := strconv.Atoi(w[1])
				prefix := name + ":" + w[1] + ": " + w[2]
				if n == 0 {
					prefix = name + ": " + w[2]
				}
				found := false
				for _, e := range list {
					if strings.HasPrefix(e.Error(), prefix) && e.Line == n && e.File == name {
						found = true
					}
				}
				if !found {
					t.Errorf("missing error\n  %s\ngot:\n%v", prefix, err)
				}
			}
		})
	}
}

func TestParseGood(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(name, data)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != name || p.Version != 1 {
				t.Errorf("name %q version %d", p.Name, p.Version)
			}
			if err := p.Validate(); err != nil {
				t.Errorf("parsed policy does not validate:\n%v", err)
			}
			if _, err := Compile(nil, p, CompileOptions{Workdir: "/work"}); err != nil {
				t.Errorf("compile: %v", err)
			}
		})
	}
}

func mustParseFile(t *testing.T, file string) *Policy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(filepath.Base(file), data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseQuickstart(t *testing.T) {
	p := mustParseFile(t, "good/quickstart.yaml")
	want := &Policy{
		Name:    "quickstart.yaml",
		Version: 1,
		FilesystemPolicy: Filesystem{
			ReadOnly:       []string{"/usr", "/lib", "/proc", "/dev/urandom", "/app", "/etc", "/var/log"},
			ReadWrite:      []string{"/sandbox", "/tmp", "/dev/null"},
			IncludeWorkdir: true,
		},
		Landlock: Landlock{Compatibility: BestEffort},
		Process:  Process{RunAsUser: "sandbox", RunAsGroup: "sandbox"},
		NetworkPolicies: map[string]NetworkPolicy{"github_api": {
			Name: "github-api-readonly",
			Endpoints: []Endpoint{{Host: "api.github.com", Ports: []int{443}, Protocol: "rest",
				Enforcement: "enforce", Access: "read-only"}},
			Binaries: []Binary{{Path: "/usr/bin/curl"}},
		}},
		Clawrun: Extensions{
			Seccomp:  SeccompSettings{Profile: ProfileAgent},
			Landlock: LandlockSettings{ScopeSignals: true, ScopeAbstractUnix: true},
		},
		HasFilesystem: true,
		HasNetwork:    true,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
}

func TestParseNormalizes(t *testing.T) {
	p := mustParseFile(t, "good/full-network.yaml")
	if got, want := p.FilesystemPolicy.ReadOnly, []string{"/usr", "/etc", "/opt/tools"}; !reflect.DeepEqual(got, want) {
		t.Errorf("read_only %q, want %q", got, want)
	}
	if p.Process.RunAsUser != "1000" || p.Process.RunAsGroup != "1000" {
		t.Errorf("process %+v", p.Process)
	}
	gh := p.NetworkPolicies["github"]
	if gh.Endpoints[0].Rules[1].Method != "POST" || gh.Endpoints[0].Rules[1].Query["per_page"] != "100" {
		t.Errorf("rules %+v", gh.Endpoints[0].Rules)
	}
	if got := gh.Endpoints[0].DenyRules; len(got) != 2 || got[1].Method != "*" || got[1].Path != "/admin/**" {
		t.Errorf("deny_rules %+v", got)
	}
	if got := gh.Endpoints[1].Ports; !reflect.DeepEqual(got, []int{80, 443}) {
		t.Errorf("ports %v", got)
	}
	db := p.NetworkPolicies["internal-db"].Endpoints[0]
	if !reflect.DeepEqual(db.Ports, []int{5432, 5433}) || !reflect.DeepEqual(db.AllowedIPs, []string{"10.0.5.0/24", "10.0.6.7/32", "fd00::/8"}) {
		t.Errorf("db %+v", db)
	}
	if p.NetworkPolicies["internal-db"].Name != "internal-db" {
		t.Errorf("name should default to the key")
	}
	mcp := p.NetworkPolicies["mcp"].Endpoints[0]
	if mcp.Host != "mcp.example.com" {
		t.Errorf("host %q", mcp.Host)
	}
	if mcp.Rules[1].Tool != "search_*" || mcp.DenyRules[1].Tool != "send_email" || mcp.DenyRules[1].Method != "tools/call" {
		t.Errorf("mcp rules %+v deny %+v", mcp.Rules, mcp.DenyRules)
	}
	x := p.Clawrun
	if !reflect.DeepEqual(x.Seccomp.DenySyscalls, []string{"add_key", "keyctl"}) || x.Landlock.ScopeSignals ||
		!x.Landlock.ScopeAbstractUnix || !reflect.DeepEqual(x.Landlock.TCPBind, []uint16{0, 8080}) ||
		!reflect.DeepEqual(x.Landlock.TCPConnect, []uint16{80, 443}) {
		t.Errorf("clawrun %+v", x)
	}
	if p.Landlock.Compatibility != HardRequirement {
		t.Errorf("compatibility %q", p.Landlock.Compatibility)
	}
	if len(p.Warnings) != 1 || p.Warnings[0].Field != "network_middlewares" || p.Warnings[0].Line != 83 {
		t.Errorf("warnings %+v", p.Warnings)
	}
}

func TestParseSections(t *testing.T) {
	for _, tc := range []struct {
		file          string
		fs, net       bool
		policies, eps int
	}{
		{"good/network-only.yaml", false, true, 1, 1},
		{"good/deny-all-egress.yaml", true, true, 0, 0},
		{"good/anchors.yaml", true, true, 2, 2},
		{"good/policy.json", true, true, 1, 2},
	} {
		p := mustParseFile(t, tc.file)
		eps := 0
		for _, np := range p.NetworkPolicies {
			eps += len(np.Endpoints)
		}
		if p.HasFilesystem != tc.fs || p.HasNetwork != tc.net || len(p.NetworkPolicies) != tc.policies || eps != tc.eps {
			t.Errorf("%s: fs %v net %v policies %d endpoints %d", tc.file, p.HasFilesystem, p.HasNetwork, len(p.NetworkPolicies), eps)
		}
	}
}

func TestParseMinimal(t *testing.T) {
	p, err := Parse("min", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.HasFilesystem || p.HasNetwork || p.Clawrun.Seccomp.Profile != ProfileAgent ||
		p.Landlock.Compatibility != BestEffort || !p.Clawrun.Landlock.ScopeSignals {
		t.Errorf("defaults: %+v", p)
	}
	p, err = Parse("empty-fs", []byte("filesystem_policy: {}"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasFilesystem || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Reason, "every file access will be denied") {
		t.Errorf("empty filesystem_policy: %+v", p)
	}
}

func TestHost(t *testing.T) {
	for host, want := range map[string]string{
		"api.github.com":     "",
		"API.GitHub.com.":    "",
		"*.example.com":      "",
		"*.co.uk":            "public suffix",
		"localhost":          "",
		"_dmarc.example.com": "",
		"*":                  "over-broad",
		"*.":                 "over-broad",
		"*.com":              "over-broad",
		"**.example.com":     "whole first label",
		"a.*.com":            "whole first label",
		"*foo.com":           "whole first label",
		"*.*.example.com":    "whole first label",
		"1.2.3.4":            "IP addresses are not allowed",
		"[::1]":              "IP addresses are not allowed",
		"::1":                "IP addresses are not allowed",
		"1.2.3.4.5":          "looks like an IP",
		"a..com":             "empty label",
		"-a.com":             "invalid DNS label",
		"ex ample.com":       "invalid DNS label",
		"":                   "empty host",
	} {
		_, reason := normHost(host)
		if (want == "") != (reason == "") || !strings.Contains(reason, want) {
			t.Errorf("normHost(%q) = %q, want %q", host, reason, want)
		}
	}
}

func TestIdentity(t *testing.T) {
	for id, want := range map[string]string{
		"sandbox":     "sandbox",
		"1000":        "1000",
		"01000":       "1000",
		"0":           "",
		"00":          "",
		"root":        "",
		"4294967295":  "",
		"99999999999": "",
		"a b":         "",
		"-x":          "",
	} {
		got, reason := normIdentity(id)
		if got != want || (want == "") == (reason == "") {
			t.Errorf("normIdentity(%q) = %q, %q; want %q", id, got, reason, want)
		}
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"agent-default":         true,
		"team_a.v2":             true,
		"0":                     true,
		"":                      false,
		"Agent":                 false,
		"../etc/passwd":         false,
		"/etc/passwd":           false,
		"a/b":                   false,
		".hidden":               false,
		"-x":                    false,
		strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false,
	} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v", name, err)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{"agent.yaml", 7, "filesystem_policy.read_write[1]", `"/": read-write / is not allowed`}, `agent.yaml:7: filesystem_policy.read_write[1]: "/": read-write / is not allowed`},
		{Error{"agent.yaml", 0, "process.run_as_user", "x"}, "agent.yaml: process.run_as_user: x"},
		{Error{"agent.yaml", 3, "", "invalid YAML"}, "agent.yaml:3: invalid YAML"},
		{Error{"", 0, "run.clawrun.egress[0]", "x"}, "run.clawrun.egress[0]: x"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	l := ErrorList{{File: "a", Line: 2, Reason: "two"}, {File: "a", Line: 1, Reason: "one"}}
	if got := l.asError().Error(); got != "a:1: one\na:2: two" {
		t.Errorf("list: %q", got)
	}
	if ErrorList(nil).asError() != nil {
		t.Error("an empty list must be a nil error")
	}
}

func TestManyErrorsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("filesystem_policy:\n  read_only:\n")
	for range 200 {
		b.WriteString("    - relative\n")
	}
	_, err := Parse("many", []byte(b.String()))
	l, _ := AsErrorList(err)
	if len(l) != maxErrors+1 || !strings.Contains(l[maxErrors].Reason, "and 150 more errors") {
		t.Errorf("got %d errors, last %v", len(l), l[len(l)-1])
	}
}
