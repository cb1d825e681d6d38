package cli

import (
	"testing"
	"time"
)

// Completion opens overlord.db with its own short lock timeout, not the
// store's default (10s): a shell's Tab never waits on a busy store.
func TestCompletionLockTimeout(t *testing.T) {
	a := &App{Getenv: func(string) string { return "" }, stateDir: t.TempDir()}
	if got := a.completionStore().LockTimeout(); got != completionLockTimeout || got > time.Second {
		t.Errorf("completion's lock timeout %s, want %s", got, completionLockTimeout)
	}
}
