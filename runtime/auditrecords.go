package runtime

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel's audit records of Landlock denials, as the kernel prints
// them to /dev/kmsg when no audit daemon runs, or as auditd writes them
// to its log. One denial is one audit event: records that share the
// serial of audit(TIME:SERIAL).

// Audit record types (include/uapi/linux/audit.h).
const (
	auditSyscall        = 1300
	auditLandlockAccess = 1423
	auditLandlockDomain = 1424
)

// auditd names the types it knows; older auditd writes UNKNOWN[1423].
var auditTypeNames = map[string]int{
	"SYSCALL":         auditSyscall,
	"LANDLOCK_ACCESS": auditLandlockAccess,
	"LANDLOCK_DOMAIN": auditLandlockDomain,
}

// auditRecord is one line of an audit event.
type auditRecord struct {
	Type   int
	Time   time.Time
	Serial uint64
	Fields map[string]string
}

// parseAuditLine reads one audit record in the kernel's format
// ("audit: type=1423 audit(1796649325.648:89): domain=..."), or auditd's
// ("type=LANDLOCK_ACCESS msg=audit(1796649325.648:89): domain=...").
func parseAuditLine(line string) (auditRecord, bool) {
	var rec auditRecord
	// auditd's enriched format appends interpreted fields after 0x1d.
	line, _, _ = strings.Cut(line, "\x1d")
	i := strings.Index(line, "type=")
	if i < 0 {
		return rec, false
	}
	typ, rest, ok := strings.Cut(line[i+len("type="):], " ")
	if !ok || !parseAuditType(typ, &rec.Type) {
		return rec, false
	}
	stamp, fields, ok := strings.Cut(rest, "): ")
	if !ok {
		return rec, false
	}
	stamp = strings.TrimPrefix(strings.TrimPrefix(stamp, "msg="), "audit(")
	if !parseAuditStamp(stamp, &rec) {
		return rec, false
	}
	rec.Fields = parseAuditFields(fields)
	return rec, true
}

func parseAuditType(s string, typ *int) bool {
	if n, ok := auditTypeNames[s]; ok {
		*typ = n
		return true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "UNKNOWN["), "]")
	n, err := strconv.Atoi(s)
	*typ = n
	return err == nil
}

// parseAuditStamp reads "SECONDS.MILLIS:SERIAL".
func parseAuditStamp(s string, rec *auditRecord) bool {
	when, serial, ok := strings.Cut(s, ":")
	if !ok {
		return false
	}
	sec, msec, ok := strings.Cut(when, ".")
	if !ok {
		return false
	}
	secs, err1 := strconv.ParseInt(sec, 10, 64)
	msecs, err2 := strconv.ParseInt(msec, 10, 64)
	n, err3 := strconv.ParseUint(serial, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	rec.Time = time.Unix(secs, msecs*int64(time.Millisecond))
	rec.Serial = n
	return true
}

// parseAuditFields splits key=value pairs. The kernel quotes a string it
// trusts and hex-encodes one with spaces, quotes or control characters
// (audit_log_untrustedstring), so a quoted value never holds a quote.
func parseAuditFields(s string) map[string]string {
	fields := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				value, s = rest[1:], ""
			} else {
				value, s = rest[1:1+end], rest[2+end:]
			}
		} else {
			value, s, _ = strings.Cut(rest, " ")
			value = decodeUntrusted(key, value)
		}
		fields[key] = value
	}
	return fields
}

// untrustedFields are the keys whose unquoted values are hex.
var untrustedFields = map[string]bool{"path": true, "name": true, "exe": true, "comm": true, "proctitle": true}

func decodeUntrusted(key, value string) string {
	if !untrustedFields[key] || value == "(null)" {
		return value
	}
	if b, err := hex.DecodeString(value); err == nil {
		return string(b)
	}
	return value
}

// auditLogLines are the audit records of the kernel's log buffer and of
// auditd's log, whichever has them: the kernel prints them only while no
// audit daemon listens, then auditd writes them.
type auditLogLines struct {
	Records []auditRecord
	// Suppressed counts the records the kernel's printk rate limit dropped
	// after since ("kauditd_printk_skb: N callbacks suppressed").
	Suppressed int
	// Lost counts the records the kernel dropped after since, its backlog
	// full ("audit: backlog limit exceeded").
	Lost int
}

// readAuditLogs reads /dev/kmsg and auditd's log files.
func readAuditLogs(since time.Time) (*auditLogLines, error) {
	out := &auditLogLines{}
	if err := readKmsg(out, since); err != nil {
		return nil, err
	}
	for _, path := range auditdLogFiles() {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		err = scanAuditLines(f, out)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return out, nil
}

func scanAuditLines(r io.Reader, out *auditLogLines) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rec, ok := parseAuditLine(sc.Text()); ok {
			out.Records = append(out.Records, rec)
		}
	}
	return sc.Err()
}

// auditdLogFiles are auditd's log (log_file of auditd.conf) and its last
// rotation.
func auditdLogFiles() []string {
	path := "/var/log/audit/audit.log"
	if data, err := os.ReadFile("/etc/audit/auditd.conf"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			key, value, ok := strings.Cut(line, "=")
			if ok && strings.TrimSpace(key) == "log_file" {
				path = strings.TrimSpace(value)
			}
		}
	}
	return []string{path + ".1", path}
}

// readKmsg reads the kernel's log buffer from its start without waiting
// for new messages. Each read returns one message:
// "PRIORITY,SEQUENCE,MICROSECONDS_SINCE_BOOT,FLAGS;TEXT".
func readKmsg(out *auditLogLines, since time.Time) error {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("/dev/kmsg: %w", err)
	}
	defer unix.Close(fd)
	booted := bootTime()
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EPIPE):
			continue // older messages were overwritten while reading
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("/dev/kmsg: %w", err)
		}
		kmsgLine(string(buf[:n]), booted, since, out)
	}
}

// kmsgLine takes the audit record, or the rate limit's count, of one
// kernel message.
func kmsgLine(msg string, booted, since time.Time, out *auditLogLines) {
	prefix, text, ok := strings.Cut(msg, ";")
	if !ok {
		return
	}
	text, _, _ = strings.Cut(text, "\n") // continuation lines: dictionary
	if count, ok := strings.CutPrefix(text, "kauditd_printk_skb: "); ok {
		if at, ok := kmsgTime(prefix, booted); ok && !at.Before(since) {
			n, _ := strconv.Atoi(strings.TrimSuffix(count, " callbacks suppressed"))
			out.Suppressed += n
		}
		return
	}
	if text == "audit: backlog limit exceeded" {
		if at, ok := kmsgTime(prefix, booted); ok && !at.Before(since) {
			out.Lost++
		}
		return
	}
	if rest, ok := strings.CutPrefix(text, "audit: "); ok {
		if rec, ok := parseAuditLine(rest); ok {
			out.Records = append(out.Records, rec)
		}
	}
}

func kmsgTime(prefix string, booted time.Time) (time.Time, bool) {
	parts := strings.Split(prefix, ",")
	if len(parts) < 3 {
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return booted.Add(time.Duration(us) * time.Microsecond), true
}

// bootTime is the wall time the kernel's monotonic clock started at.
func bootTime() time.Time {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// auditStatus is what the kernel says of its audit (AUDIT_GET).
type auditStatus struct {
	Enabled uint32 // 0 off, 1 on, 2 on and locked
	Pid     uint32 // the audit daemon's, 0 for none
}

// readAuditStatus asks the kernel over netlink, as auditctl -s does.
func readAuditStatus() (auditStatus, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return auditStatus{}, fmt.Errorf("netlink audit socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	req := make([]byte, unix.NLMSG_HDRLEN)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.AUDIT_GET)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return auditStatus{}, fmt.Errorf("AUDIT_GET: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return auditStatus{}, fmt.Errorf("AUDIT_GET: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return auditStatus{}, fmt.Errorf("AUDIT_GET: %w", err)
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4:
				if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return auditStatus{}, fmt.Errorf("AUDIT_GET: %w", unix.Errno(-errno))
				}
			case m.Header.Type == unix.AUDIT_GET && len(m.Data) >= 16:
				// struct audit_status: mask, enabled, failure, pid, ...
				return auditStatus{
					Enabled: binary.NativeEndian.Uint32(m.Data[4:]),
					Pid:     binary.NativeEndian.Uint32(m.Data[12:]),
				}, nil
			}
		}
	}
}
