package seccomp

import (
	"fmt"

	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
)

// Load installs profile on the calling thread only (no TSYNC): the caller
// is the launcher, which execs from this thread right after.
func Load(profile *configs.Seccomp) error {
	if !seccomp.Enabled {
		return fmt.Errorf("this clawrun build has no seccomp support")
	}
	_, err := seccomp.InitSeccomp(profile)
	return err
}

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
