package landlock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The three Landlock system calls, on the calling thread only. (go-landlock's
// syscall package pulls in psx, which rewires pthread_create for all-thread
// calls; the launcher needs none of that.)

func createRuleset(attr *unix.LandlockRulesetAttr) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func abiVersion() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, errno
	}
	return int(v), nil
}

const ruleTypeNetPort = 2

// netPortAttr is struct landlock_net_port_attr.
type netPortAttr struct {
	allowedAccess uint64
	port          uint64
}

func addRule(rulesetFD int, ruleType int, attr unsafe.Pointer) error {
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(rulesetFD), uintptr(ruleType), uintptr(attr), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func addPathRule(rulesetFD int, allowed uint64, parentFD int) error {
	attr := unix.LandlockPathBeneathAttr{Allowed_access: allowed, Parent_fd: int32(parentFD)}
	return addRule(rulesetFD, unix.LANDLOCK_RULE_PATH_BENEATH, unsafe.Pointer(&attr))
}

func addPortRule(rulesetFD int, allowed uint64, port uint16) error {
	attr := netPortAttr{allowedAccess: allowed, port: uint64(port)}
	return addRule(rulesetFD, ruleTypeNetPort, unsafe.Pointer(&attr))
}

func restrictSelf(rulesetFD int, flags uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(rulesetFD), flags, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
