package runtime

import (
	"errors"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
)

// The runtime's errors carry a kind of github.com/containerd/errdefs, for
// callers to test with errors.Is:
//
//   - errdefs.ErrNotFound: the container does not exist;
//   - errdefs.ErrAlreadyExists: the id is taken;
//   - errdefs.ErrInvalidArgument: a bad id, bundle, spec, policy or
//     annotation, or a bad option (nothing was started);
//   - errdefs.ErrFailedPrecondition: the container is not in a state that
//     allows the operation (start a running one, delete a running one
//     without force, exec in a stopped one, start one whose egress filter
//     is down).
//
// The message stays what it was, runc's words where runc has some
// ("container does not exist", "container with given ID already exists"):
// containerd's shim and runc's tests match them.

// kindError is err with a kind, and err's message alone.
type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// kinds are the kinds the runtime gives.
var kinds = []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument, errdefs.ErrFailedPrecondition}

// withKind gives err kind, unless it has one already: the innermost kind,
// given where the error was known best, wins.
func withKind(kind, err error) error {
	if err == nil || hasKind(err) {
		return err
	}
	return &kindError{err: err, kind: kind}
}

func hasKind(err error) bool {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

func invalidArgument(err error) error    { return withKind(errdefs.ErrInvalidArgument, err) }
func failedPrecondition(err error) error { return withKind(errdefs.ErrFailedPrecondition, err) }

// libcontainerKinds are the kinds of libcontainer's errors.
var libcontainerKinds = []struct{ err, kind error }{
	{libcontainer.ErrNotExist, errdefs.ErrNotFound},
	{libcontainer.ErrExist, errdefs.ErrAlreadyExists},
	{libcontainer.ErrInvalidID, errdefs.ErrInvalidArgument},
	{libcontainer.ErrRunning, errdefs.ErrFailedPrecondition},
	{libcontainer.ErrNotRunning, errdefs.ErrFailedPrecondition},
	{libcontainer.ErrPaused, errdefs.ErrFailedPrecondition},
	{libcontainer.ErrNotPaused, errdefs.ErrFailedPrecondition},
}

// classify gives *err the kind of the libcontainer error it holds, if
// any. The runtime's exported methods defer it on their error.
func classify(err *error) {
	if *err == nil || hasKind(*err) {
		return
	}
	for _, k := range libcontainerKinds {
		if errors.Is(*err, k.err) {
			*err = withKind(k.kind, *err)
			return
		}
	}
}
