// Package buildinfo reports the version the binaries were built as.
package buildinfo

import "runtime/debug"

// version is stamped by the Makefile with -ldflags "-X ...buildinfo.version=v1.2.3".
var version string

// Version returns the stamped version, else the module version from the
// build information, else "devel".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
