package seccomp

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/seccomp/bpf"
)

// loadChildEnv makes the test binary a child that loads the profile in it
// (JSON) with libcontainer, then execs sleep, which keeps the filter.
const loadChildEnv = "CLAWRUN_TEST_LIBCONTAINER_LOAD"

func TestMain(m *testing.M) {
	if profile := os.Getenv(loadChildEnv); profile != "" {
		libcontainerLoadAndSleep(profile)
	}
	os.Exit(m.Run())
}

// libcontainerLoadAndSleep loads a profile as the launcher did before it
// installed compiled programs, then becomes sleep(1) on the same thread.
func libcontainerLoadAndSleep(profileJSON string) {
	runtime.LockOSThread()
	var profile configs.Seccomp
	fail := func(err error) {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	if err := json.Unmarshal([]byte(profileJSON), &profile); err != nil {
		fail(err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(err)
	}
	if _, err := lcseccomp.InitSeccomp(&profile); err != nil {
		fail(err)
	}
	unix.CloseOnExec(3) // the parent reads until the exec
	fail(unix.Exec("/bin/sleep", []string{"sleep", "60"}, nil))
}

// loadedByLibcontainer returns the filter libcontainer loads for profile,
// as the kernel holds it (read back with ptrace).
func loadedByLibcontainer(t *testing.T, profile *configs.Seccomp) []unix.SockFilter {
	t.Helper()
	data, err := json.Marshal(profile)
	if err != nil {
		t.Fatal(err)
	}
	execed, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer execed.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadChildEnv+"="+string(data))
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	io.Copy(io.Discard, execed) // EOF at the exec (or the child's death)

	// ptrace requests must come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := cmd.Process.Pid
	if err := unix.PtraceAttach(pid); err != nil {
		t.Fatalf("ptrace attach: %v", err)
	}
	defer unix.PtraceDetach(pid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || !ws.Stopped() {
		t.Fatalf("the child did not stop (%v, %v): did it exec sleep?", ws, err)
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0, 0, 0, 0)
	if errno != 0 {
		t.Fatalf("PTRACE_SECCOMP_GET_FILTER: %v", errno)
	}
	filter := make([]unix.SockFilter, n)
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0, uintptr(unsafe.Pointer(&filter[0])), 0, 0); errno != 0 {
		t.Fatalf("PTRACE_SECCOMP_GET_FILTER: %v", errno)
	}
	return filter
}

// TestCompileIsLibcontainersFilter: the program the runtime compiles for
// each kind of profile clawrun makes is, instruction for instruction, the
// filter libcontainer loaded for it in the launcher.
func TestCompileIsLibcontainersFilter(t *testing.T) {
	for name, profile := range map[string]*configs.Seccomp{
		"agent":                AgentProfile(nil),
		"agent, extra denials": AgentProfile([]string{"getcpu", "ptrace", "sethostname"}),
		"agent, no MPTCP":      WithoutMPTCP(AgentProfile(nil)),
		"no MPTCP alone":       WithoutMPTCP(nil),
	} {
		t.Run(name, func(t *testing.T) {
			prog, err := Compile(profile)
			if err != nil {
				t.Fatal(err)
			}
			got, err := bpf.Decode(prog)
			if err != nil {
				t.Fatal(err)
			}
			want := loadedByLibcontainer(t, profile)
			if !slices.Equal(got, want) {
				t.Fatalf("compiled %d instructions, libcontainer loaded %d; they differ", len(got), len(want))
			}
		})
	}
}

// TestCompileRefuses: what Compile cannot translate exactly is an error,
// never a weaker filter.
func TestCompileRefuses(t *testing.T) {
	eperm := uint(unix.EPERM)
	errno := func(name string, args ...*configs.Arg) *configs.Syscall {
		return &configs.Syscall{Name: name, Action: configs.Errno, ErrnoRet: &eperm, Args: args}
	}
	for name, profile := range map[string]*configs.Seccomp{
		"nil":              nil,
		"default errno":    {DefaultAction: configs.Errno, Syscalls: []*configs.Syscall{errno("ptrace")}},
		"architectures":    {DefaultAction: configs.Allow, Architectures: []string{"x86"}},
		"kill rule":        {DefaultAction: configs.Allow, Syscalls: []*configs.Syscall{{Name: "ptrace", Action: configs.Kill}}},
		"unknown syscall":  {DefaultAction: configs.Allow, Syscalls: []*configs.Syscall{errno("not_a_syscall")}},
		"argument twice":   {DefaultAction: configs.Allow, Syscalls: []*configs.Syscall{errno("socket", &configs.Arg{Index: 0, Value: 1, Op: configs.EqualTo}, &configs.Arg{Index: 0, Value: 2, Op: configs.EqualTo})}},
		"unknown operator": {DefaultAction: configs.Allow, Syscalls: []*configs.Syscall{errno("socket", &configs.Arg{Index: 0, Value: 1, Op: 99})}},
	} {
		if _, err := Compile(profile); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}
