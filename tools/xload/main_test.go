package main

import (
	"testing"

	"github.com/xstack/xstack/internal/xstest"
)

func xstestMain(m *testing.M) { xstest.Main(m) }
