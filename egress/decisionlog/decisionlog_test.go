package decisionlog

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/rules"
)

func rec(i int, decision string) Record {
	return Record{
		Time: time.Unix(1700000000, 0).UTC(), Generation: 1, Protocol: "tls",
		Host: fmt.Sprintf("h%03d.example", i), Port: 443, Decision: decision, Reason: rules.ReasonAllowed,
	}
}

func lineLen(t *testing.T, r Record) int64 {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b) + 1)
}

func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	per := lineLen(t, rec(0, "allow"))
	l, err := NewLog(path, 3*per, 2) // three records a file, two rotated files
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := l.Write(rec(i, "allow")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(rec(99, "allow")); err != ErrLogClosed {
		t.Errorf("Write after Close: %v", err)
	}
	// 10 records: 0-2, 3-5 dropped... path.2 = 3-5, path.1 = 6-8, path = 9.
	want := map[string][]string{
		path:        {"h009.example"},
		path + ".1": {"h006.example", "h007.example", "h008.example"},
		path + ".2": {"h003.example", "h004.example", "h005.example"},
	}
	for p, hosts := range want {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) > 3*per {
			t.Errorf("%s: %d bytes, over the cap", p, len(data))
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if len(lines) != len(hosts) {
			t.Fatalf("%s: %d lines, want %d", p, len(lines), len(hosts))
		}
		for i, line := range lines {
			var r Record
			if err := json.Unmarshal([]byte(line), &r); err != nil || r.Host != hosts[i] {
				t.Errorf("%s line %d: %q %v", p, i, line, err)
			}
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("path.3 exists: %v", err)
	}

	// ReadLog reads the rotated files oldest first.
	var hosts []string
	if err := ReadLog(path, false, nil, func(r Record) { hosts = append(hosts, r.Host) }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(hosts, " "); got != "h003.example h004.example h005.example h006.example h007.example h008.example h009.example" {
		t.Errorf("ReadLog: %s", got)
	}

	// Reopening appends to the live file.
	l, err = NewLog(path, 3*per, 2)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(rec(10, "allow"))
	l.Close()
	if data, _ := os.ReadFile(path); strings.Count(string(data), "\n") != 2 {
		t.Errorf("reopened: %q", data)
	}
}

func TestLogKeepZeroAndHugeLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	l, err := NewLog(path, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 3 {
		if err := l.Write(rec(i, "deny")); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if strings.Count(string(data), "\n") != 1 || !strings.Contains(string(data), "h002") {
		t.Errorf("keep 0: %q", data)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("keep 0 rotated: %v", err)
	}
	if _, err := NewLog(path, 0, 1); err == nil {
		t.Error("maxBytes 0 accepted")
	}
}

func TestLogConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	l, err := NewLog(path, 4096, 50)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				l.Write(rec(g*100+i, "allow"))
			}
		})
	}
	wg.Wait()
	l.Close()
	n := 0
	seen := map[string]bool{}
	err = ReadLog(path, false, nil, func(r Record) { n++; seen[r.Host] = true })
	if err != nil || n != 400 || len(seen) != 400 {
		t.Errorf("read %d records (%d distinct), %v", n, len(seen), err)
	}
}

func TestReadLogFollow(t *testing.T) {

	path := filepath.Join(t.TempDir(), "d.log")
	per := lineLen(t, rec(0, "allow"))
	l, err := NewLog(path, 2*per, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write(rec(0, "allow"))
	l.Write(rec(1, "deny"))

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 100)
	done := make(chan error)
	go func() {
		done <- readLog(ctx, path, true, 5*time.Millisecond, func(r Record) bool { return r.Decision == "deny" }, func(r Record) { got <- r.Host })
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case h := <-got:
			if h != want {
				t.Fatalf("got %s, want %s", h, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for %s", want)
		}
	}
	expect("h001.example")
	// New records, across several rotations; only denials pass the filter.
	for i := 2; i < 12; i++ {
		d := "allow"
		if i%2 == 0 {
			d = "deny"
		}
		l.Write(rec(i, d))
		if i%3 == 0 {
			time.Sleep(20 * time.Millisecond) // let the reader catch up sometimes
		}
	}
	for i := 2; i < 12; i += 2 {
		expect(fmt.Sprintf("h%03d.example", i))
	}
	// A record half written is not emitted until its newline arrives.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rec(50, "deny"))
	f.Write(b[:10])
	time.Sleep(30 * time.Millisecond)
	f.Write(append(b[10:], '\n'))
	f.Close()
	expect("h050.example")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ReadLogContext: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadLogContext did not stop")
	}
	select {
	case h := <-got:
		t.Errorf("unexpected record %s", h)
	default:
	}
}

func TestReadLogMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.log")
	if err := ReadLog(path, false, nil, func(Record) {}); !os.IsNotExist(err) {
		t.Errorf("missing log: %v", err)
	}
	// Following a log that does not exist yet waits for it.
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 1)
	go readLog(ctx, path, true, 5*time.Millisecond, nil, func(r Record) { got <- r.Host })
	defer cancel()
	time.Sleep(20 * time.Millisecond)
	l, err := NewLog(path, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write(rec(7, "allow"))
	select {
	case h := <-got:
		if h != "h007.example" {
			t.Errorf("got %s", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
	// Garbage lines are skipped.
	os.WriteFile(path+"x", []byte("not json\n{\"host\":\"ok.example\"}\n"), 0o644)
	var hosts []string
	ReadLog(path+"x", false, nil, func(r Record) { hosts = append(hosts, r.Host) })
	if strings.Join(hosts, ",") != "ok.example" {
		t.Errorf("garbage: %v", hosts)
	}
}

// TestReadLogFollowBurst rotates many times between two polls: every
// record still arrives once, in order. Each burst (25 rotations) stays
// within what the log keeps (50 files), and the next burst waits until
// the reader has caught up: records rotated past keep are gone by design,
// and a reader starved for a whole burst on a loaded machine must not make
// the test lose them.
func TestReadLogFollowBurst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	per := lineLen(t, rec(0, "allow"))
	l, err := NewLog(path, 2*per, 50)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 5 {
		l.Write(rec(i, "allow"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var hosts []string
	go readLog(ctx, path, true, 30*time.Millisecond, nil, func(r Record) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
	})
	caughtUp := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			have := len(hosts)
			mu.Unlock()
			if have >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out with %d of %d records", have, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	const n = 205
	caughtUp(5)
	for round := range 4 {
		for i := 5 + round*50; i < 5+(round+1)*50; i++ {
			l.Write(rec(i, "allow"))
		}
		caughtUp(5 + (round+1)*50)
	}
	time.Sleep(100 * time.Millisecond) // a record read twice would show now
	mu.Lock()
	defer mu.Unlock()
	if len(hosts) != n {
		t.Errorf("%d records, want %d", len(hosts), n)
	}
	for i, h := range hosts {
		if want := fmt.Sprintf("h%03d.example", i); h != want {
			t.Fatalf("record %d: %s, want %s", i, h, want)
		}
	}
}

// TestRecordRequestFields: a request's fields are written when set and
// left out when not, so that the lines of connections and queries read
// as before, and lines written before them still read.
func TestRecordRequestFields(t *testing.T) {
	conn, err := json.Marshal(Record{Protocol: "tls", Host: "a.test", Decision: "allow", Reason: rules.ReasonAllowed})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"method", "path", "calls", "status", "detail", "inspected"} {
		if strings.Contains(string(conn), `"`+key+`"`) {
			t.Errorf("a connection's line has %q: %s", key, conn)
		}
	}
	req := Record{Protocol: "https", Host: "a.test", Decision: "deny", Reason: "rpc", Rule: "mcp", Method: "POST", Path: "/mcp",
		Calls: []string{"tools/call:exec"}, Status: 200}
	line, _ := json.Marshal(req)
	var back Record
	if err := json.Unmarshal(line, &back); err != nil || back.Method != "POST" || back.Path != "/mcp" || back.Calls[0] != "tools/call:exec" || back.Status != 200 {
		t.Errorf("round trip of %s: %+v, %v", line, back, err)
	}
	old := `{"time":"2026-01-02T03:04:05Z","generation":1,"protocol":"tls","host":"a.test","port":443,"decision":"deny","reason":"unenforceable","rule":"api"}`
	var older Record
	if err := json.Unmarshal([]byte(old), &older); err != nil || older.Reason != "unenforceable" || older.Method != "" {
		t.Errorf("an older line: %+v, %v", older, err)
	}
}
