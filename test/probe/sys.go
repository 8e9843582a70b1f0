package main

// Subcommands for what Landlock does not govern and the agent seccomp
// profile does: file metadata, the execution domain, socket families, and
// a pause that waits like a pod's sandbox. The commands register
// themselves in the probe's command table: this file's init runs after
// main.go's (files initialize in name order).

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	for name, c := range map[string]command{
		"chmod":        {"PATH MODE", 2, 2, cmdChmod},
		"chown":        {"PATH UID GID", 3, 3, cmdChown},
		"setxattr":     {"PATH NAME VALUE", 3, 3, cmdSetxattr},
		"utimes":       {"PATH", 1, 1, cmdUtimes},
		"personality":  {"PERSONA", 1, 1, cmdPersonality},
		"socket-sweep": {"socket|socketpair [MAX]", 1, 2, cmdSocketSweep},
		"pause":        {"", 0, 0, cmdPause},
	} {
		commands[name] = c
	}
}

// parseNumber reads a decimal, 0x hex or 0 octal number.
func parseNumber(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, failure{"USAGE", fmt.Sprintf("%q is not a number", s)}
	}
	return n, nil
}

func cmdChmod(a []string) error {
	mode, err := strconv.ParseUint(a[1], 8, 32)
	if err != nil {
		return failure{"USAGE", fmt.Sprintf("mode %q is not octal", a[1])}
	}
	return errSys("chmod", unix.Chmod(a[0], uint32(mode)))
}

func cmdChown(a []string) error {
	uid, err := atoiArg(a[1])
	if err != nil {
		return err
	}
	gid, err := atoiArg(a[2])
	if err != nil {
		return err
	}
	return errSys("chown", unix.Chown(a[0], uid, gid))
}

func cmdSetxattr(a []string) error {
	return errSys("setxattr", unix.Setxattr(a[0], a[1], []byte(a[2]), 0))
}

// cmdUtimes sets the access and modification times to an hour ago.
func cmdUtimes(a []string) error {
	t := unix.NsecToTimespec(time.Now().Add(-time.Hour).UnixNano())
	return errSys("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, a[0], []unix.Timespec{t, t}, 0))
}

// cmdPersonality passes PERSONA to personality(2) as the full 64-bit
// register, as a C caller could, and prints the previous persona.
func cmdPersonality(a []string) error {
	persona, err := parseNumber(a[0])
	if err != nil {
		return err
	}
	old, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, uintptr(persona), 0, 0)
	if errno != 0 {
		return errSys("personality", errno)
	}
	return okWith(fmt.Sprintf("was 0x%x", uint32(old)))
}

// cmdSocketSweep tries socket(2) or socketpair(2) with every family from
// 0 to MAX (datagram, then stream, then raw, protocol 0) and lists the
// families refused with EPERM ("none" when none is): the kernel's own answers for a family it
// lacks or a type it refuses are EAFNOSUPPORT, ESOCKTNOSUPPORT and the
// like, so EPERM on a family without a capability check is a filter's.
func cmdSocketSweep(a []string) error {
	var open func(family, typ int) error
	switch a[0] {
	case "socket":
		open = func(family, typ int) error {
			fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}
	case "socketpair":
		open = func(family, typ int) error {
			fds, err := unix.Socketpair(family, typ|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				unix.Close(fds[0])
				unix.Close(fds[1])
			}
			return err
		}
	default:
		return failure{"USAGE", "socket-sweep socket|socketpair [MAX]"}
	}
	last := 63
	if len(a) > 1 {
		n, err := atoiArg(a[1])
		if err != nil {
			return err
		}
		last = n
	}
	var eperm []string
	for family := 0; family <= last; family++ {
		refused := true
		for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_STREAM, unix.SOCK_RAW} {
			if err := open(family, typ); err != unix.EPERM {
				refused = false
				break
			}
		}
		if refused {
			eperm = append(eperm, strconv.Itoa(family))
		}
	}
	if len(eperm) == 0 {
		return okWith("eperm=none")
	}
	return okWith("eperm=" + strings.Join(eperm, ","))
}

// cmdPause waits for SIGTERM or SIGINT and exits 0, as a pod's pause does.
func cmdPause([]string) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return nil
}
