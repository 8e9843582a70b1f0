package seccomp

import (
	"fmt"

	libseccomp "github.com/seccomp/libseccomp-golang"
)

// CheckNames refuses syscall names libseccomp does not know on this
// architecture: libcontainer skips unknown names silently, and a deny rule
// that is silently skipped is an allowance.
func CheckNames(names []string) error {
	for _, n := range names {
		if _, err := libseccomp.GetSyscallFromName(n); err != nil {
			return fmt.Errorf("clawrun.seccomp.deny_syscalls: unknown system call %q", n)
		}
	}
	return nil
}
