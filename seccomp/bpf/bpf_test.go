package bpf

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func encode(insns ...unix.SockFilter) []byte {
	var out []byte
	for _, in := range insns {
		out = binary.NativeEndian.AppendUint16(out, in.Code)
		out = append(out, in.Jt, in.Jf)
		out = binary.NativeEndian.AppendUint32(out, in.K)
	}
	return out
}

func TestDecodeRefusesMalformed(t *testing.T) {
	for name, prog := range map[string][]byte{
		"empty":          nil,
		"partial insn":   make([]byte, InsnSize+3),
		"over the limit": make([]byte, (maxInsns+1)*InsnSize),
	} {
		if _, err := Decode(prog); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	ret := unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}
	got, err := Decode(encode(ret))
	if err != nil || len(got) != 1 || got[0] != ret {
		t.Fatalf("Decode: %v, %v", got, err)
	}
}

// TestInstall: a program that refuses getpid with an errno takes effect on
// the calling thread, and a program the kernel rejects is an error.
func TestInstall(t *testing.T) {
	const nrOffset = 0 // struct seccomp_data.nr
	refuseGetpid := encode(
		unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: nrOffset},
		unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_GETPID},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	)
	jumpOut := encode(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: 5})
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread is discarded
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			t.Error(err)
			return
		}
		if err := Install(jumpOut); !errors.Is(err, unix.EINVAL) {
			t.Errorf("a jump out of the program: got %v, want EINVAL", err)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0); e != 0 {
			t.Errorf("getpid before the filter: %v", e)
		}
		if err := Install(refuseGetpid); err != nil {
			t.Error(err)
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0); e != unix.EPERM {
			t.Errorf("getpid under the filter: got %v, want EPERM", e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0); e != 0 {
			t.Errorf("getppid under the filter: %v", e)
		}
	}()
	<-done
}
