package nictest

import (
	"testing"

	"github.com/xstack/xstack/internal/xstest"
)

// TestMain fails the package if its tests leave goroutines or file
// descriptors behind.
func TestMain(m *testing.M) { xstest.Main(m) }
