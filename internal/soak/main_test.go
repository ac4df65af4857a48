package soak

import (
	"testing"

	"github.com/xstack/xstack/internal/xstest"
)

// TestMain fails the package if its tests leave goroutines, file
// descriptors or gVisor references behind.
func TestMain(m *testing.M) { xstest.Main(m) }
