package certs

import (
	"bufio"
	"bytes"
	"strings"
)

// bundleAddrLine starts the line a minion's bundle may have before its PEM
// blocks: the address the overlord registered the minion at, so that
// 'minion init' can say which --listen matches it. PEM decoders skip text
// before the first block, so the bundle stays a valid PEM file.
const bundleAddrLine = "# overlord reaches this minion at "

// BundleAddrNote returns the line that records addr in a bundle.
func BundleAddrNote(addr string) []byte {
	return []byte(bundleAddrLine + addr + "\n")
}

// BundleAddr returns the address recorded in a bundle's PEM, if any.
func BundleAddr(data []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----BEGIN") {
			break
		}
		if addr, ok := strings.CutPrefix(line, bundleAddrLine); ok && strings.TrimSpace(addr) != "" {
			return strings.TrimSpace(addr), true
		}
	}
	return "", false
}
