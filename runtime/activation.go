package runtime

import (
	"os"
	"strconv"
	"syscall"
)

// listenFDs returns the sockets handed to clawrun by systemd-style socket
// activation (LISTEN_PID/LISTEN_FDS, starting at fd 3), so that they can
// be passed on to the container; it clears the variables so that nothing
// else takes them.
func listenFDs() []*os.File {
	defer os.Unsetenv("LISTEN_PID")
	defer os.Unsetenv("LISTEN_FDS")
	defer os.Unsetenv("LISTEN_FDNAMES")
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil
	}
	files := make([]*os.File, 0, n)
	for fd := 3; fd < 3+n; fd++ {
		syscall.CloseOnExec(fd)
		files = append(files, os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd)))
	}
	return files
}
