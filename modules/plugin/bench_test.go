package plugin_test

import (
	"context"
	"fmt"
	"testing"
)

// The cost of a plugin's checks: a lookup of a described plugin (what the
// checks add to, beside the process), and a whole call.
func BenchmarkPluginLookup(b *testing.B) {
	r, dir := registry(b)
	writePlugin(b, dir, "p", fmt.Sprintf(pluginTmpl, "", "p"), 0o755)
	if _, err := r.Lookup("p", "run"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Lookup("p", "run"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPluginCall(b *testing.B) {
	r, dir := registry(b)
	writePlugin(b, dir, "p", fmt.Sprintf(pluginTmpl, "", "p"), 0o755)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Call(context.Background(), "p", "run", nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
