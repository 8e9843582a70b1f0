package runtime

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The records of one denial as the kernel prints them (Linux 6.18).
const kmsgDenial = `audit: type=1423 audit(1796649325.648:89): domain=1956e76b8 blockers=fs.make_reg path="/tmp/lltest" dev="vda" ino=10084439
audit: type=1424 audit(1796649325.648:89): domain=1956e76b8 status=allocated mode=enforcing pid=10592 uid=0 exe="/tmp/lltest/lltest" comm="lltest"
audit: type=1300 audit(1796649325.648:89): arch=c000003e syscall=257 success=no exit=-13 ppid=10554 pid=10592 auid=4294967295 uid=0 comm="sh" exe="/usr/bin/dash" key=(null)
audit: type=1327 audit(1796649325.648:89): proctitle=7368002D63
audit: type=1423 audit(1796649325.700:90): domain=1956e76b8 blockers=fs.write_file,fs.truncate path=2F746D702F6120622E747874 dev="vda" ino=12
audit: type=1424 audit(1796649325.704:91): domain=1956e76b8 status=deallocated denials=2`

func parseAll(t *testing.T, text string) []auditRecord {
	t.Helper()
	var out []auditRecord
	for _, line := range strings.Split(text, "\n") {
		rec, ok := parseAuditLine(line)
		if !ok {
			t.Fatalf("not parsed: %q", line)
		}
		out = append(out, rec)
	}
	return out
}

func TestParseAuditLineKernelAndAuditd(t *testing.T) {
	kernel, ok := parseAuditLine(`audit: type=1423 audit(1796649325.648:89): domain=1956e76b8 blockers=fs.make_reg path="/tmp/x y" dev="vda" ino=1`)
	if !ok {
		t.Fatal("kernel line not parsed")
	}
	want := auditRecord{Type: 1423, Time: time.Unix(1796649325, 648e6), Serial: 89,
		Fields: map[string]string{"domain": "1956e76b8", "blockers": "fs.make_reg", "path": "/tmp/x y", "dev": "vda", "ino": "1"}}
	if !reflect.DeepEqual(kernel, want) {
		t.Errorf("kernel line:\n got %+v\nwant %+v", kernel, want)
	}
	for _, line := range []string{
		`type=LANDLOCK_ACCESS msg=audit(1796649325.648:89): domain=1956e76b8 blockers=fs.make_reg path="/tmp/x y" dev="vda" ino=1`,
		`type=UNKNOWN[1423] msg=audit(1796649325.648:89): domain=1956e76b8 blockers=fs.make_reg path=2F746D702F782079 dev="vda" ino=1`,
		"type=LANDLOCK_ACCESS msg=audit(1796649325.648:89): domain=1956e76b8 blockers=fs.make_reg path=\"/tmp/x y\" dev=\"vda\" ino=1\x1dUID=\"root\"",
	} {
		got, ok := parseAuditLine(line)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("auditd line %q:\n got %+v (%v)\nwant %+v", line, got, ok, want)
		}
	}
	for _, bad := range []string{"", "audit: nothing", "type=1423 audit(x:1): a=b", "type=SYSCALL msg=audit(1.2:3) no colon"} {
		if _, ok := parseAuditLine(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestJoinAndAttributeDenials(t *testing.T) {
	domains := joinDenials(parseAll(t, kmsgDenial))
	d := domains["1956e76b8"]
	if d == nil || d.Pid != 10592 || d.Comm != "lltest" || len(d.Denials) != 2 {
		t.Fatalf("domain: %+v", d)
	}
	allocated := time.Unix(1796649325, 648e6)
	launches := []launch{
		{ID: "old", Pid: 10592, Time: allocated.Add(-time.Hour)},
		{ID: "mine", Pid: 10592, Time: allocated.Add(-time.Second)},
		{ID: "other", Pid: 777, Time: allocated.Add(-time.Second)},
		{ID: "later", Pid: 10592, Time: allocated.Add(time.Second)},
	}
	got := attribute(domains, launches, "mine")
	want := []FileDenial{
		// The first denial has its syscall record: the refused process.
		{Time: allocated, Path: "/tmp/lltest", Access: []string{"fs.make_reg"}, Pid: 10592, Comm: "sh", Exe: "/usr/bin/dash", Domain: "1956e76b8"},
		// A later one only the domain: its launcher.
		{Time: time.Unix(1796649325, 700e6), Path: "/tmp/a b.txt", Access: []string{"fs.write_file", "fs.truncate"}, Pid: 10592, Comm: "lltest", Exe: "/tmp/lltest/lltest", Domain: "1956e76b8"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("attributed:\n got %+v\nwant %+v", got, want)
	}
	// The pid's earlier user, a later one, and another container get none.
	for _, id := range []string{"old", "later", "other"} {
		if got := attribute(domains, launches, id); len(got) != 0 {
			t.Errorf("%s was given %+v", id, got)
		}
	}
}

func TestDomainWithoutItsFirstRecord(t *testing.T) {
	// The domain's first record was dropped: its launcher's pid is known
	// only where the launched program itself was refused.
	recs := parseAll(t, `audit: type=1423 audit(1796649325.700:90): domain=abc blockers=fs.read_file path="/etc/shadow" dev="vda" ino=12
audit: type=1423 audit(1796649325.800:91): domain=abc blockers=fs.read_file path="/etc/gshadow" dev="vda" ino=13
audit: type=1300 audit(1796649325.800:91): arch=c000003e syscall=257 success=no exit=-13 pid=42 comm="cat" exe="/bin/cat"
audit: type=1423 audit(1796649325.900:92): domain=def blockers=fs.read_file path="/etc/passwd" dev="vda" ino=14`)
	domains := joinDenials(recs)
	started := time.Unix(1796649325, 0)
	launches := []launch{{ID: "c", Pid: 42, Time: started}}
	got := attribute(domains, launches, "c")
	if len(got) != 2 || got[0].Path != "/etc/shadow" || got[1].Pid != 42 || got[1].Comm != "cat" {
		t.Errorf("attributed: %+v", got)
	}
	if n := unattributed(domains, launches, started); n != 1 {
		t.Errorf("unattributed: %d, want 1 (domain def)", n)
	}
	if n := unattributed(domains, launches, started.Add(time.Hour)); n != 0 {
		t.Errorf("unattributed before the container: %d", n)
	}
}

func TestKmsgRateLimitCount(t *testing.T) {
	booted := time.Unix(1000, 0)
	var out auditLogLines
	kmsgLine("4,100,5000000,-;kauditd_printk_skb: 7 callbacks suppressed\n", booted, booted.Add(time.Second), &out)
	kmsgLine("4,101,500000,-;kauditd_printk_skb: 3 callbacks suppressed\n", booted, booted.Add(time.Second), &out)
	kmsgLine("5,102,6000000,-;audit: type=1423 audit(1005.000:9): domain=a blockers=fs.read_file path=\"/x\"\n SUBSYSTEM=x\n", booted, booted, &out)
	kmsgLine("4,103,6000001,-;audit: backlog limit exceeded\n", booted, booted, &out)
	if out.Suppressed != 7 || out.Lost != 1 || len(out.Records) != 1 || out.Records[0].Fields["path"] != "/x" {
		t.Errorf("got %+v", out)
	}
}
