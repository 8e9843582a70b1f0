package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// Limits, as in OpenShell where it has one.
const (
	MaxFilesystemPaths = 256
	maxPathLen         = 4096
	maxSyscallLen      = 64
	maxNameLen         = 64
)

// Each checker below returns the canonical form of a value and "" or, if
// the value is refused, a reason. The parser and Validate share them so a
// Policy built in code obeys the same rules as a parsed one.

// cleanPath checks a filesystem_policy path and returns it cleaned (no
// trailing slash, no repeated slashes).
func cleanPath(p string) (string, string) {
	switch {
	case p == "":
		return "", "empty path"
	case len(p) > maxPathLen:
		return "", fmt.Sprintf("%q: longer than %d bytes", truncate(p), maxPathLen)
	case strings.ContainsRune(p, 0):
		return "", fmt.Sprintf("%q: contains a NUL byte", truncate(p))
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Sprintf("%q: must be an absolute path", truncate(p))
	}
	for _, c := range strings.Split(p, "/") {
		if c == "." || c == ".." {
			return "", fmt.Sprintf("%q: %q components are not allowed", truncate(p), c)
		}
	}
	return path.Clean(p), ""
}

// cleanFSPath checks a filesystem_policy path, or the working directory
// that include_workdir adds: cleanPath's rules, and no magic link.
func cleanFSPath(p string) (string, string) {
	c, reason := cleanPath(p)
	if reason != "" {
		return "", reason
	}
	if link := magicLink(c); link != "" {
		return "", fmt.Sprintf("%q: %s is a magic link (or an alias of one), which stands for whatever it points to (for /proc/self/root, the whole root), not for a place; name the real path", truncate(p), link)
	}
	return c, ""
}

// magicLinkNames are the entries of a /proc/PID (or /proc/PID/task/TID)
// directory that are, or hold, magic links.
var magicLinkNames = []string{"root", "cwd", "exe", "fd", "map_files", "ns"}

// magicLink returns the magic link that the clean absolute path p is or
// passes through ("" if none): /proc/PID/root and the like for a PID, self
// or thread-self, and /dev/fd and /dev/std{in,out,err}, the usual
// symlinks to /proc/self/fd.
func magicLink(p string) string {
	c := strings.Split(strings.TrimPrefix(p, "/"), "/")
	switch {
	case len(c) >= 2 && c[0] == "dev" && slices.Contains([]string{"fd", "stdin", "stdout", "stderr"}, c[1]):
		return "/dev/" + c[1]
	case len(c) < 3 || c[0] != "proc" || !isProcessDir(c[1]):
		return ""
	}
	i := 2
	if c[i] == "task" && len(c) > i+2 && isNumber(c[i+1]) {
		i += 2
	}
	if slices.Contains(magicLinkNames, c[i]) {
		return "/" + strings.Join(c[:i+1], "/")
	}
	return ""
}

// isProcessDir tells whether a /proc entry is a process's directory.
func isProcessDir(name string) bool {
	return name == "self" || name == "thread-self" || isNumber(name)
}

func isNumber(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// checkBinary checks a network_policies binary path: absolute, possibly a
// glob, so it is not cleaned ("**" and a trailing "/" mean something).
func checkBinary(p string) string {
	switch {
	case p == "":
		return "empty path"
	case len(p) > maxPathLen:
		return fmt.Sprintf("%q: longer than %d bytes", truncate(p), maxPathLen)
	case strings.ContainsRune(p, 0):
		return fmt.Sprintf("%q: contains a NUL byte", truncate(p))
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q: must be an absolute path (a glob such as /usr/bin/* is allowed)", truncate(p))
	}
	for _, c := range strings.Split(p, "/") {
		if c == "." || c == ".." {
			return fmt.Sprintf("%q: %q components are not allowed", truncate(p), c)
		}
	}
	return ""
}

// normHost checks an endpoint host (hostname.ParsePattern) and returns
// its canonical form.
func normHost(h string) (string, string) {
	c, err := hostname.ParsePattern(h)
	switch {
	case err == nil:
		return c, ""
	case h == "":
		return "", err.Error()
	}
	return "", fmt.Sprintf("%q: %v", truncate(h), err)
}

// checkPort accepts 1..65535.
func checkPort(p int64) string {
	if p < 1 || p > 65535 {
		return fmt.Sprintf("port %d is out of range 1-65535", p)
	}
	return ""
}

// normCIDR checks an allowed_ips entry: an address or a prefix without
// host bits set, and returns it as a prefix ("10.0.0.1" -> "10.0.0.1/32").
func normCIDR(s string) (netip.Prefix, string) {
	q := truncate(s)
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return pfx, fmt.Sprintf("%q: not a CIDR prefix such as 10.0.0.0/8", q)
		}
		if p.Masked() != p {
			return pfx, fmt.Sprintf("%q: host bits are set; did you mean %s?", q, p.Masked())
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return pfx, fmt.Sprintf("%q: not an IP address or CIDR prefix", q)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	return pfx, ""
}

// alwaysBlocked are ranges the egress filter never opens, whatever
// allowed_ips says (OpenShell behaves the same).
var alwaysBlocked = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, cloud metadata
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
}

func blockedOverlap(p netip.Prefix) (netip.Prefix, bool) {
	for _, b := range alwaysBlocked {
		if b.Overlaps(p) {
			return b, true
		}
	}
	return netip.Prefix{}, false
}

var userName = lazyRE(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$`)

// normIdentity checks run_as_user or run_as_group: a name, or a number
// written in decimal; root, by name or as 0, is refused.
func normIdentity(s string) (string, string) {
	q := truncate(s)
	if s == "" {
		return "", "empty name"
	}
	if strings.Trim(s, "0123456789") == "" {
		n, err := strconv.ParseUint(s, 10, 32)
		switch {
		case err != nil || n == 1<<32-1: // -1 means "unchanged" to setuid
			return "", fmt.Sprintf("%s is out of range", q)
		case n == 0:
			return "", "root (0) is not allowed"
		}
		return strconv.FormatUint(n, 10), ""
	}
	if s == "root" {
		return "", "root is not allowed"
	}
	if !userName.MatchString(s) {
		return "", fmt.Sprintf("%q: not a user or group name (letters, digits, '_', '.', '-', at most 32) or number", q)
	}
	return s, ""
}

var syscallName = lazyRE(`^[a-z0-9_]+$`)

func checkSyscall(s string) string {
	if len(s) > maxSyscallLen || !syscallName.MatchString(s) {
		return fmt.Sprintf("%q: not a syscall name ([a-z0-9_]+)", truncate(s))
	}
	return ""
}

var networkKey = lazyRE(`^[A-Za-z0-9_.-]+$`)

func checkNetworkKey(s string) string {
	if len(s) > 128 || !networkKey.MatchString(s) {
		return fmt.Sprintf("%q: a network policy name is letters, digits, '_', '.' and '-', at most 128", truncate(s))
	}
	return ""
}

// checkText accepts free text (a network policy's display name, a query
// value): printable, one line, bounded.
func checkText(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("%q: longer than %d characters", truncate(s), max)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Sprintf("%q: contains a control character", truncate(s))
		}
	}
	return ""
}

var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "*"}

var (
	rpcMethod = lazyRE(`^[A-Za-z0-9_./*:-]{1,128}$`)
	// toolGlob: MCP's recommended tool names, and "*".
	toolGlob = lazyRE(`^[A-Za-z0-9_.*-]{1,128}$`)
)

// normMethod checks a rule's method: an HTTP method (upper-cased) or "*",
// or for json-rpc and mcp a JSON-RPC method name such as "tools/call"
// (mcp: a glob, such as tools/*; json-rpc: exact, or "*" for any).
func normMethod(m, protocol string) (string, string) {
	if RPCProtocol(protocol) {
		if !rpcMethod.MatchString(m) {
			return "", fmt.Sprintf("%q: not a JSON-RPC method name", truncate(m))
		}
		if protocol == "json-rpc" && m != "*" && strings.Contains(m, "*") {
			return "", fmt.Sprintf("%q: a json-rpc method is exact, or \"*\" for any", truncate(m))
		}
		return m, ""
	}
	u := strings.ToUpper(m)
	for _, ok := range httpMethods {
		if u == ok {
			return u, ""
		}
	}
	return "", fmt.Sprintf("%q: not an HTTP method; valid methods are %s", truncate(m), strings.Join(httpMethods, ", "))
}

// checkTool checks a rule's tool: a glob of MCP tool names, on protocol
// mcp only.
func checkTool(t, protocol string) string {
	if protocol != "mcp" {
		return "tool needs protocol: mcp"
	}
	if !toolGlob.MatchString(t) {
		return fmt.Sprintf("%q: not a tool name glob ([A-Za-z0-9_.-] and *, at most 128)", truncate(t))
	}
	return ""
}

// checkToolMethod: a tool is what a tools/call runs; on another method it
// would match nothing.
func checkToolMethod(r Rule) string {
	if r.Tool != "" && r.Method != "tools/call" {
		return "a rule with tool needs method: tools/call"
	}
	return ""
}

// checkURLPath checks an endpoint's or a rule's path glob.
func checkURLPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return fmt.Sprintf("%q: a path must start with /", truncate(p))
	}
	if len(p) > maxPathLen {
		return fmt.Sprintf("%q: longer than %d bytes", truncate(p), maxPathLen)
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f {
			return fmt.Sprintf("%q: contains a space or control character", truncate(p))
		}
	}
	return ""
}

// oneOf checks an enumerated value.
func oneOf(v string, valid ...string) string {
	for _, ok := range valid {
		if v == ok {
			return ""
		}
	}
	return fmt.Sprintf("%q: must be one of %s", truncate(v), strings.Join(valid, ", "))
}

var (
	protocols    = []string{"rest", "websocket", "graphql", "mcp", "json-rpc", "tcp"}
	tlsModes     = []string{"skip", "terminate", "passthrough"}
	enforcements = []string{"enforce", "audit"}
	accesses     = []string{"read-only", "read-write", "full"}
	profiles     = []string{ProfileAgent, ProfileNone}
	compats      = []string{string(BestEffort), string(HardRequirement)}
)

// Seccomp profile names.
const (
	ProfileAgent = "agent"
	ProfileNone  = "none"
)

var policyName = lazyRE(`^[a-z0-9][a-z0-9_.-]*$`)

// ValidName checks a policy name given in an annotation or the config: a
// preset or a file in policy_dir, never a path, so that an annotation can
// never make the runtime read an arbitrary host file.
func ValidName(name string) error {
	if len(name) > maxNameLen || !policyName.MatchString(name) {
		return fmt.Errorf("invalid policy name %q: want [a-z0-9][a-z0-9_.-]*, at most %d characters", truncate(name), maxNameLen)
	}
	return nil
}
