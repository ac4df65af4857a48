package nic

import "fmt"

// NotSupportedError reports a kernel or driver feature this machine lacks.
// It matches ErrNotSupported with errors.Is.
type NotSupportedError struct {
	Feature string // what is missing, e.g. "AF_XDP zero-copy in driver veth"
	Hint    string // what to do instead
	Err     error  // the kernel's answer, if any
}

func (e *NotSupportedError) Error() string {
	s := e.Feature + " " + ErrNotSupported.Error()
	if e.Err != nil {
		s += fmt.Sprintf(" (%v)", e.Err)
	}
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// Is makes errors.Is(err, ErrNotSupported) true.
func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }

func (e *NotSupportedError) Unwrap() error { return e.Err }
