// Package bpf installs a compiled seccomp filter. It is all the policy
// launcher does with seccomp: the runtime compiles the profile (package
// seccomp, with libseccomp), so that the launcher, which runs inside every
// confined container, links neither libseccomp nor the profile's types.
package bpf

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// InsnSize is the size of one instruction, a struct sock_filter.
	InsnSize = 8
	// maxInsns is the kernel's BPF_MAXINSNS: a longer program is refused.
	maxInsns = 4096
)

// Decode turns prog, a classic BPF program as seccomp_export_bpf writes it
// (struct sock_filter after struct sock_filter, in the host's byte order),
// into instructions.
func Decode(prog []byte) ([]unix.SockFilter, error) {
	n := len(prog) / InsnSize
	if len(prog)%InsnSize != 0 || n == 0 || n > maxInsns {
		return nil, fmt.Errorf("invalid seccomp program of %d bytes", len(prog))
	}
	filter := make([]unix.SockFilter, n)
	for i := range filter {
		insn := prog[i*InsnSize:]
		filter[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(insn[0:2]),
			Jt:   insn[2],
			Jf:   insn[3],
			K:    binary.NativeEndian.Uint32(insn[4:8]),
		}
	}
	return filter, nil
}

// Install loads prog (see Decode) as a seccomp filter of the calling
// thread only (no TSYNC: the launcher execs from this thread right after,
// which leaves it the process's only one). The thread must have
// no_new_privs set.
func Install(prog []byte) error {
	filter, err := Decode(prog)
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return os.NewSyscallError("seccomp(SECCOMP_SET_MODE_FILTER)", errno)
	}
	return nil
}
