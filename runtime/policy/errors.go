package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// maxErrors bounds an ErrorList: past it the file is too broken for more
// messages to help, and a hostile document must not produce megabytes.
const maxErrors = 50

// Error formats as NAME:LINE: FIELD: REASON; parts that are unknown (no
// line for a compiled or annotation value, no field for a syntax error)
// are left out.
func (e Error) Error() string { return formatDiag(e.File, e.Line, e.Field, e.Reason) }

// String formats a Warning like an Error.
func (w Warning) String() string { return formatDiag(w.File, w.Line, w.Field, w.Reason) }

func formatDiag(file string, line int, field, reason string) string {
	var b strings.Builder
	if file != "" {
		b.WriteString(file)
		if line > 0 {
			fmt.Fprintf(&b, ":%d", line)
		}
		b.WriteString(": ")
	}
	if field != "" {
		b.WriteString(field)
		b.WriteString(": ")
	}
	b.WriteString(reason)
	return b.String()
}

// ErrorList is every validation failure found in one document, in line
// order. It is the error type returned by Parse, ParseShortcut,
// ParseConfig, Compile and Validate.
type ErrorList []Error

// Error lists the errors one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As find the individual Errors.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// asError sorts the list by line and returns nil when it is empty, so that
// callers never return a non-nil error interface holding an empty list.
func (l ErrorList) asError() error {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool { return l[i].Line < l[j].Line })
	if len(l) > maxErrors {
		more := len(l) - maxErrors
		l = append(l[:maxErrors:maxErrors], Error{File: l[0].File, Reason: fmt.Sprintf("and %d more errors", more)})
	}
	return l
}

// AsErrorList returns the ErrorList inside err, if any.
func AsErrorList(err error) (ErrorList, bool) {
	var l ErrorList
	ok := errors.As(err, &l)
	return l, ok
}
