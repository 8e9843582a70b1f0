package seccomp

import (
	"errors"
	"fmt"
	"io"
	"os"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// Compile turns profile, one of clawrun's own (a default action of allow
// and rules that return an errno), into the classic BPF program
// libcontainer would load for it (seccomp.InitSeccomp), in the layout
// bpf.Install takes. The runtime compiles, once per create or exec, so
// that the launcher inside the container only installs.
//
// It builds the filter as libcontainer does (same rules in the same order,
// the same libseccomp optimisation), and libcontainer adds no -ENOSYS stub
// to a filter whose default is allow, so the program is the one the
// launcher loaded before. What clawrun's profiles never use (other
// actions, flags, architectures) is refused rather than approximated.
func Compile(profile *configs.Seccomp) ([]byte, error) {
	if err := checkCompilable(profile); err != nil {
		return nil, err
	}
	filter, err := libseccomp.NewFilter(libseccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	defer filter.Release()
	// libcontainer's threshold for libseccomp's binary tree of syscalls:
	// the same one gives the same program.
	if len(profile.Syscalls) > 32 {
		if err := filter.SetOptimize(2); err != nil {
			return nil, fmt.Errorf("seccomp: %w", err)
		}
	}
	for _, call := range profile.Syscalls {
		if err := addRule(filter, call); err != nil {
			return nil, err
		}
	}
	return exportBPF(filter)
}

// checkCompilable refuses what Compile does not translate.
func checkCompilable(profile *configs.Seccomp) error {
	switch {
	case profile == nil:
		return errors.New("seccomp: no profile")
	case profile.DefaultAction != configs.Allow:
		return errors.New("seccomp: a profile's default action must be allow")
	case len(profile.Architectures) > 0 || len(profile.Flags) > 0:
		return errors.New("seccomp: a profile of clawrun has no architectures or flags")
	}
	return nil
}

// addRule adds call's rule: its errno for its system call when all its
// comparisons hold (libseccomp takes at most one per argument).
func addRule(filter *libseccomp.ScmpFilter, call *configs.Syscall) error {
	if call == nil || call.Action != configs.Errno || call.ErrnoRet == nil {
		return fmt.Errorf("seccomp: rule %+v: only errno rules are supported", call)
	}
	nr, err := libseccomp.GetSyscallFromName(call.Name)
	if err != nil {
		return fmt.Errorf("seccomp: unknown system call %q", call.Name)
	}
	action := libseccomp.ActErrno.SetReturnCode(int16(*call.ErrnoRet))
	if len(call.Args) == 0 {
		return ruleError(call, filter.AddRule(nr, action))
	}
	var conds []libseccomp.ScmpCondition
	seen := map[uint]bool{}
	for _, arg := range call.Args {
		if seen[arg.Index] {
			return fmt.Errorf("seccomp: %s: argument %d compared twice in one rule", call.Name, arg.Index)
		}
		seen[arg.Index] = true
		cond, err := condition(arg)
		if err != nil {
			return fmt.Errorf("seccomp: %s: %w", call.Name, err)
		}
		conds = append(conds, cond)
	}
	return ruleError(call, filter.AddRuleConditional(nr, action, conds))
}

func ruleError(call *configs.Syscall, err error) error {
	if err != nil {
		return fmt.Errorf("seccomp: rule for %s: %w", call.Name, err)
	}
	return nil
}

var compareOps = map[configs.Operator]libseccomp.ScmpCompareOp{
	configs.EqualTo:              libseccomp.CompareEqual,
	configs.NotEqualTo:           libseccomp.CompareNotEqual,
	configs.GreaterThan:          libseccomp.CompareGreater,
	configs.GreaterThanOrEqualTo: libseccomp.CompareGreaterEqual,
	configs.LessThan:             libseccomp.CompareLess,
	configs.LessThanOrEqualTo:    libseccomp.CompareLessOrEqual,
	configs.MaskEqualTo:          libseccomp.CompareMaskedEqual,
}

func condition(arg *configs.Arg) (libseccomp.ScmpCondition, error) {
	op, ok := compareOps[arg.Op]
	if !ok {
		return libseccomp.ScmpCondition{}, fmt.Errorf("unknown comparison %v", arg.Op)
	}
	return libseccomp.MakeCondition(arg.Index, op, arg.Value, arg.ValueTwo)
}

// exportBPF returns the filter's program. libseccomp 2.5 exports to a
// file descriptor only: a memfd holds it.
func exportBPF(filter *libseccomp.ScmpFilter) ([]byte, error) {
	fd, err := unix.MemfdCreate("seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "seccomp-bpf")
	defer f.Close()
	if err := filter.ExportBPF(f); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}
