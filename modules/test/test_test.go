package test_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/test"
	"github.com/overlordhq/overlord/status"
)

func registry(t *testing.T) *modules.Registry {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(test.Module{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMethods(t *testing.T) {
	r := registry(t)
	tests := []struct {
		method     string
		named      map[string]any
		positional []any
		want       any
		kind       status.Kind
		msg        string
	}{
		{method: "ping", want: true},
		{method: "echo", positional: []any{"hi"}, want: "hi"},
		{method: "echo", positional: []any{map[string]any{"a": []any{1.0}}}, want: map[string]any{"a": []any{1.0}}},
		{method: "echo", positional: []any{nil}, want: nil},
		{method: "echo", kind: status.KindBadArgs, msg: "missing required parameter message"},
		{method: "add", positional: []any{1.0, 2.5}, want: 3.5},
		{method: "add", named: map[string]any{"a": -1.0, "b": 1.0}, want: 0.0},
		{method: "add", positional: []any{"1", 2.0}, kind: status.KindBadArgs, msg: "parameter a: want float"},
		{method: "sleep", positional: []any{0.01}, want: true},
		{method: "sleep", positional: []any{-1.0}, kind: status.KindBadArgs, msg: "must not be negative"},
		{method: "fail", kind: status.KindModuleError, msg: "failed on purpose"},
		{method: "fail", positional: []any{"disk on fire"}, kind: status.KindModuleError, msg: "disk on fire"},
		{method: "nosuch", kind: status.KindUnknownMethod, msg: "have: ping, echo, sleep, fail, add"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			got, err := r.Call(context.Background(), "test", tt.method, tt.named, tt.positional)
			if tt.kind != "" {
				if status.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("error %v, want %s saying %q", err, tt.kind, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("result %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestSleepStopsEarly(t *testing.T) {
	r := registry(t)
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		kind status.Kind
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, status.KindTimeout},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, status.KindCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := r.Call(ctx, "test", "sleep", nil, []any{30.0})
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("sleep took %s after its context ended", took)
			}
			if status.KindOf(err) != tt.kind {
				t.Errorf("error %v, want kind %s", err, tt.kind)
			}
		})
	}
}
