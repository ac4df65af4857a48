package core

import "github.com/xstack/xstack/internal/affinity"

// PinProcess binds every thread of the process to cpu (see
// affinity.PinProcess).
func PinProcess(cpu int) error { return affinity.PinProcess(cpu) }
