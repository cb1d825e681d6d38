package enrolment

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// TokenPrefix starts every join token; the digit is the format's version.
const TokenPrefix = "ovl1"

// Sizes of a token's parts, in bytes before hex encoding.
const (
	tokenIDBytes     = 8
	tokenSecretBytes = 16
)

// ErrBadToken is returned for a string that is not a join token.
var ErrBadToken = errors.New("not a join token (want ovl1.ID.SECRET.CA-FINGERPRINT, as printed by 'overlord token create')")

// Token is a join token: ovl1.ID.SECRET.CA-FINGERPRINT, all hex. The ID
// names the token in overlord.db, which keeps only the SHA-256 of the
// secret; the secret authorises signing; the CA fingerprint (SHA-256 of
// the CA certificate) lets the minion verify the enrolment endpoint
// before it sends anything.
type Token struct {
	ID            string
	Secret        string
	CAFingerprint string
}

// NewToken makes a token with a random ID and secret for the CA whose
// fingerprint is caFingerprint.
func NewToken(caFingerprint string) (Token, error) {
	fp, err := NormalizeFingerprint(caFingerprint)
	if err != nil {
		return Token{}, err
	}
	id, err := randomHex(tokenIDBytes)
	if err != nil {
		return Token{}, err
	}
	secret, err := randomHex(tokenSecretBytes)
	if err != nil {
		return Token{}, err
	}
	return Token{ID: id, Secret: secret, CAFingerprint: fp}, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// String returns the token as printed and typed.
func (t Token) String() string {
	return strings.Join([]string{TokenPrefix, t.ID, t.Secret, t.CAFingerprint}, ".")
}

// Hash returns the hex SHA-256 of the token's secret: what overlord.db
// keeps. The secret is 128 random bits, so a fast hash is enough: there
// is nothing to guess from it.
func (t Token) Hash() string {
	sum := sha256.Sum256([]byte(t.Secret))
	return hex.EncodeToString(sum[:])
}

// ParseToken parses a join token; surrounding white space is ignored.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != TokenPrefix {
		return Token{}, ErrBadToken
	}
	t := Token{ID: parts[1], Secret: parts[2], CAFingerprint: parts[3]}
	if !isHex(t.ID, 2*tokenIDBytes) || !isHex(t.Secret, 2*tokenSecretBytes) || !isHex(t.CAFingerprint, 2*sha256.Size) {
		return Token{}, ErrBadToken
	}
	return t, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// NormalizeFingerprint accepts a SHA-256 fingerprint as 64 hex digits,
// in either case, with or without colons and a "sha256:" prefix, and
// returns it as 64 lower-case hex digits.
func NormalizeFingerprint(s string) (string, error) {
	fp := strings.TrimSpace(s)
	if len(fp) > 7 && strings.EqualFold(fp[:7], "sha256:") {
		fp = fp[7:]
	}
	fp = strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	if !isHex(fp, 2*sha256.Size) {
		return "", fmt.Errorf("bad CA fingerprint %q: want the 64 hex digits of a SHA-256 (as 'overlord ca init' prints)", s)
	}
	return fp, nil
}
