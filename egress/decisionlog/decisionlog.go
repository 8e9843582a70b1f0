// Package decisionlog is the egress filter's decision log: one JSON
// Record (or an OCSF event carrying it, see Format) per decision in a
// size-capped, rotated file (Log), read back and
// followed across rotations (ReadLog), and the LogLimiter that keeps a
// container from flooding it.
package decisionlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/clawrun/clawrun/egress/rules"
)

// Record is one line of the decision log.
type Record struct {
	Time        time.Time    `json:"time"`
	Container   string       `json:"container,omitempty"`
	Generation  int64        `json:"generation"`
	Protocol    string       `json:"protocol"` // dns, tls, http, https (a request of an inspected TLS connection), tcp
	Source      string       `json:"source,omitempty"`
	Destination string       `json:"destination,omitempty"` // original destination (ip:port)
	Host        string       `json:"host,omitempty"`        // SNI, Host header or query name
	Port        int          `json:"port,omitempty"`
	QueryType   string       `json:"query_type,omitempty"`
	ResolvedIP  string       `json:"resolved_ip,omitempty"`
	Decision    string       `json:"decision"` // allow, deny, audit
	Reason      rules.Reason `json:"reason"`
	Rule        string       `json:"rule,omitempty"`
	Binary      string       `json:"binary,omitempty"`
	BytesOut    int64        `json:"bytes_out,omitempty"`
	BytesIn     int64        `json:"bytes_in,omitempty"`
	DurationMS  float64      `json:"duration_ms,omitempty"`
	// Inspected, on a tls connection, says its requests were decided
	// each (records of protocol https) rather than the connection spliced.
	Inspected bool `json:"inspected,omitempty"`
	// Method and Path (as sent, without the query) of a request; Calls
	// the JSON-RPC calls of its body when they were read ("method", or
	// "tools/call:tool"); Status the HTTP status the client was
	// answered; Detail what the reason alone does not say.
	Method string   `json:"method,omitempty"`
	Path   string   `json:"path,omitempty"`
	Calls  []string `json:"calls,omitempty"`
	Status int      `json:"status,omitempty"`
	Detail string   `json:"detail,omitempty"`
	// Aggregated, on a summary line, is how many more decisions like this
	// one (protocol, decision, reason, host, port, query type) were made
	// from Since to Time: counted, not logged one by one.
	Aggregated int64 `json:"aggregated,omitempty"`
	// Dropped, on a line of decision "dropped", is how many decisions from
	// Since to Time went unlogged: the log's rate limit.
	Dropped int64     `json:"dropped,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// ErrLogClosed is returned by Write after Close.
var ErrLogClosed = errors.New("decision log closed")

// Log is a size-capped decision log: one JSON Record per line. When a
// line would take the file past maxBytes, the file is rotated to path.1
// (path.1 to path.2, and so on, keeping keep files) and a new one is
// started. Safe for concurrent use.
type Log struct {
	path     string
	maxBytes int64
	keep     int
	encode   func(Record) ([]byte, error)

	mu   sync.Mutex
	f    *os.File
	size int64
}

// NewLog opens (appending) or creates the log at path, in FormatClawrun.
func NewLog(path string, maxBytes int64, keep int) (*Log, error) {
	return NewLogFormat(path, maxBytes, keep, FormatClawrun)
}

// NewLogFormat is NewLog writing format.
func NewLogFormat(path string, maxBytes int64, keep int, format Format) (*Log, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("decision log %s: maxBytes must be positive", path)
	}
	if format != FormatClawrun && format != FormatOCSF && format != "" {
		return nil, fmt.Errorf("decision log %s: unknown format %q", path, format)
	}
	l := &Log{path: path, maxBytes: maxBytes, keep: max(keep, 0), encode: func(r Record) ([]byte, error) { return json.Marshal(r) }}
	if format == FormatOCSF {
		l.encode = encodeOCSF
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends one record.
func (l *Log) Write(r Record) error {
	line, err := l.encode(r)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrLogClosed
	}
	// A line longer than maxBytes still goes into a file of its own.
	var rotErr error
	if l.size > 0 && l.size+int64(len(line)) > l.maxBytes {
		if rotErr = l.rotate(); l.f == nil {
			return rotErr
		}
	}
	n, err := l.f.Write(line)
	if err != nil && n > 0 {
		// A line cut short (the disk is full) is taken back, so that the
		// next line starts a line and every line stays one Record.
		if terr := l.f.Truncate(l.size); terr != nil {
			err = errors.Join(err, terr)
		} else {
			n = 0
		}
	}
	l.size += int64(n)
	return errors.Join(rotErr, err)
}

// rotate closes the file before renaming it, so that a reader following
// the old file sees all of it once it notices the rename. Whatever fails,
// a file is reopened at path so that logging goes on.
func (l *Log) rotate() error {
	err := l.f.Close()
	l.f = nil
	keepErr := func(e error) {
		if err == nil && e != nil && !errors.Is(e, os.ErrNotExist) {
			err = e
		}
	}
	if l.keep == 0 {
		keepErr(os.Remove(l.path))
	} else {
		for i := l.keep - 1; i >= 1; i-- {
			keepErr(os.Rename(rotated(l.path, i), rotated(l.path, i+1)))
		}
		keepErr(os.Rename(l.path, rotated(l.path, 1)))
	}
	if oerr := l.open(); oerr != nil {
		return oerr
	}
	return err
}

func rotated(path string, i int) string { return fmt.Sprintf("%s.%d", path, i) }

// Close closes the log.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// followInterval is how often ReadLog polls a followed log for new lines
// and rotations.
const followInterval = 200 * time.Millisecond

// ReadLog calls out for every record of the log at path that filter
// accepts (nil accepts all), the rotated files first, oldest first. With
// follow it then waits for new records, across rotations, forever: see
// ReadLogContext to stop it. Lines of either Format are read (a log
// whose format changed holds both); lines that are neither are skipped.
func ReadLog(path string, follow bool, filter func(Record) bool, out func(Record)) error {
	return ReadLogContext(context.Background(), path, follow, filter, out)
}

// ReadLogContext is ReadLog, following until ctx is done (and then
// returning nil).
//
// Files are told apart by identity (os.SameFile), not by name: an open
// file stays readable whatever is renamed, and a rotated file is found
// again under its new name. The writer closes a file before renaming it,
// so once a rotation is seen the old file can be read to its end.
func ReadLogContext(ctx context.Context, path string, follow bool, filter func(Record) bool, out func(Record)) error {
	return readLog(ctx, path, follow, followInterval, filter, out)
}

// readLog is ReadLogContext, polling a followed log every interval.
func readLog(ctx context.Context, path string, follow bool, interval time.Duration, filter func(Record) bool, out func(Record)) error {
	lr := &logReader{path: path, emit: func(line []byte) {
		r, ok := decodeLine(line)
		if !ok {
			return
		}
		if filter == nil || filter(r) {
			out(r)
		}
	}}
	defer lr.close()
	if err := lr.readExisting(follow); err != nil || !follow {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := lr.poll(); err != nil {
			return err
		}
	}
}

// logReader reads a log's files in order, following the live one across
// rotations.
type logReader struct {
	path     string
	emit     func(line []byte)
	live     *os.File    // the file being followed
	liveInfo os.FileInfo // its identity
	last     os.FileInfo // the newest file read, live or rotated
	partial  []byte      // a line of live not yet complete
}

func (lr *logReader) close() {
	if lr.live != nil {
		lr.live.Close()
	}
}

// readExisting reads the rotated files, oldest first, then the live file
// (which, when following, need not exist yet). The live file is opened
// before the rotated ones are listed: if it is rotated in between, it is
// found among them, and the files newer than it are left to poll.
func (lr *logReader) readExisting(follow bool) error {
	var err error
	if lr.live, err = os.Open(lr.path); err != nil {
		lr.live = nil
		if !follow || !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else if lr.liveInfo, err = lr.live.Stat(); err != nil {
		return err
	}
	rotatedFiles, at := openRotated(lr.path, lr.liveInfo)
	older := rotatedFiles
	if at >= 0 {
		closeAll(rotatedFiles[:at+1])
		older = rotatedFiles[at+1:]
	}
	if len(older) > 0 {
		lr.last, _ = older[0].Stat()
	}
	if err := readFiles(older, lr.emit); err != nil {
		return err
	}
	if lr.live == nil {
		return nil
	}
	lr.last = lr.liveInfo
	return readLines(lr.live, &lr.partial, lr.emit)
}

// poll reads what was added to the live file, and follows the log when
// the file was truncated in place, rotated or created.
func (lr *logReader) poll() error {
	if lr.live != nil {
		if err := readLines(lr.live, &lr.partial, lr.emit); err != nil {
			return err
		}
	}
	st, err := os.Stat(lr.path)
	if err != nil {
		return nil // between a rotation's rename and the new file
	}
	if lr.live == nil || !os.SameFile(st, lr.liveInfo) {
		return lr.followRotation()
	}
	if off, err := lr.live.Seek(0, io.SeekCurrent); err == nil && st.Size() < off {
		// Truncated in place: start over.
		if _, err := lr.live.Seek(0, io.SeekStart); err != nil {
			return err
		}
		lr.partial = nil
	}
	return nil
}

// followRotation goes on after the log was rotated, maybe several times
// (or created): it finishes the old live file, then reads the rotated
// files newer than the last one read, then the new live file.
func (lr *logReader) followRotation() error {
	if lr.live != nil {
		err := readLines(lr.live, &lr.partial, lr.emit)
		lr.live.Close()
		lr.live = nil
		if err != nil {
			return err
		}
		if len(lr.partial) > 0 {
			lr.emit(lr.partial)
		}
		lr.partial = nil
	}
	next, err := os.Open(lr.path)
	if err != nil {
		return nil
	}
	nextInfo, err := next.Stat()
	if err != nil {
		next.Close()
		return err
	}
	rotatedFiles, at := openRotated(lr.path, lr.last)
	newer := rotatedFiles // last is gone (rotated past keep): all are newer
	if at >= 0 {
		closeAll(rotatedFiles[at:])
		newer = rotatedFiles[:at]
	}
	// If next was rotated meanwhile it is among them: what is newer than
	// it is for the next round.
	if i := indexOf(newer, nextInfo); i >= 0 {
		closeAll(newer[:i+1])
		newer = newer[i+1:]
	}
	if err := readFiles(newer, lr.emit); err != nil {
		next.Close()
		return err
	}
	lr.live, lr.liveInfo, lr.last = next, nextInfo, nextInfo
	return readLines(lr.live, &lr.partial, lr.emit)
}

// openRotated opens path.1, path.2, ... (newest first, each file once)
// and returns them with the index of the one that is the file since (-1
// if none is).
//
// A rotation in progress renames from the oldest down, which leaves one
// missing index at a time, moving down while this scan moves up: the scan
// goes on past a missing index and stops only after three in a row. A
// file only ever moves up, one index per rotation, so it cannot slip
// behind the scan; it may be met twice, and is kept once.
func openRotated(path string, since os.FileInfo) ([]*os.File, int) {
	var all []*os.File
	var infos []os.FileInfo
	at := -1
	for i, missing := 1, 0; missing < 3; i++ {
		f, err := os.Open(rotated(path, i))
		if err != nil {
			missing++
			continue
		}
		missing = 0
		st, err := f.Stat()
		if err != nil || slices.ContainsFunc(infos, func(o os.FileInfo) bool { return os.SameFile(o, st) }) {
			f.Close()
			continue
		}
		if since != nil && at < 0 && os.SameFile(st, since) {
			at = len(all)
		}
		all, infos = append(all, f), append(infos, st)
	}
	return all, at
}

func indexOf(files []*os.File, info os.FileInfo) int {
	for i, f := range files {
		if st, err := f.Stat(); err == nil && os.SameFile(st, info) {
			return i
		}
	}
	return -1
}

// readFiles reads whole files, the last one first (oldest first), and
// closes them.
func readFiles(files []*os.File, emit func([]byte)) error {
	defer closeAll(files)
	for i := len(files) - 1; i >= 0; i-- {
		if err := readLines(files[i], nil, emit); err != nil {
			return err
		}
	}
	return nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// readLines emits the complete lines of f from its offset to its end. A
// trailing incomplete line is kept in partial (for a followed file, whose
// writer may be half-way) or emitted (for a rotated file, when partial is
// nil).
func readLines(f *os.File, partial *[]byte, emit func([]byte)) error {
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadBytes('\n')
		if partial != nil && len(*partial) > 0 {
			line = append(*partial, line...)
			*partial = nil
		}
		if err == nil {
			emit(bytes.TrimSuffix(line, []byte("\n")))
			continue
		}
		if err != io.EOF {
			return err
		}
		if len(line) > 0 {
			if partial != nil {
				*partial = line
			} else {
				emit(line)
			}
		}
		return nil
	}
}
