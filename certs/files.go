package certs

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/overlordhq/overlord/internal/atomicfile"
)

// File modes for what this package writes.
const (
	DirMode  fs.FileMode = 0o700
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
)

// EncodeCert returns c as a PEM block.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// EncodeKey returns k as a PKCS #8 PEM block.
func EncodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteNew writes data to a new file at path with mode perm, refusing to
// replace an existing file. The parent directory is created with DirMode.
// The file is created with perm and the umask applies, which can only
// make it stricter; it appears whole or not at all (atomicfile, with
// NoReplace: the exclusive create is its hard link into place).
func WriteNew(path string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), DirMode); err != nil {
		return err
	}
	err := atomicfile.WriteFile(path, data, atomicfile.Options{Mode: perm, Umask: true, NoReplace: true})
	switch {
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s already exists; not overwriting it", path)
	case errors.Is(err, atomicfile.ErrDirNotSynced):
		return nil // in place; syncing its directory is only tried
	}
	return err
}

// CheckKeyFile returns an error if the private key file at path can be
// read or written by group or others.
func CheckKeyFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("private key %s has mode %#o, readable by others; it must be 0600 (chmod 600 %s)", path, m, path)
	}
	return nil
}

// Bundle is one PEM file holding a certificate, then its private key,
// then the CA certificate: what `overlord minion add` and `overlord ca
// client` hand out.
type Bundle struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	CA   *x509.Certificate
}

// Encode returns the bundle as PEM.
func (b *Bundle) Encode() ([]byte, error) {
	key, err := EncodeKey(b.Key)
	if err != nil {
		return nil, err
	}
	return bytes.Join([][]byte{EncodeCert(b.Cert), key, EncodeCert(b.CA)}, nil), nil
}

// ReadBundle reads and checks a bundle: three PEM blocks in order, a key
// that matches the certificate, and a certificate the CA signed.
func ReadBundle(path string) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := ParseBundle(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// ParseBundle parses and checks the PEM of a bundle.
func ParseBundle(data []byte) (*Bundle, error) {
	var blocks []*pem.Block
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		blocks = append(blocks, blk)
	}
	if len(blocks) != 3 || blocks[0].Type != "CERTIFICATE" || blocks[1].Type != "PRIVATE KEY" || blocks[2].Type != "CERTIFICATE" {
		return nil, errors.New("not a bundle: want three PEM blocks, CERTIFICATE, PRIVATE KEY, CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(blocks[0].Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(blocks[1].Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key: unsupported type %T", k)
	}
	ca, err := x509.ParseCertificate(blocks[2].Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	b := &Bundle{Cert: cert, Key: key, CA: ca}
	if _, err := b.TLS(); err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("certificate %q is not signed by the bundle's CA: %w", cert.Subject.CommonName, err)
	}
	return b, nil
}

// TLS returns the certificate and key as a tls.Certificate, checking that
// they match.
func (b *Bundle) TLS() (tls.Certificate, error) {
	key, err := EncodeKey(b.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(EncodeCert(b.Cert), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate and key do not match: %w", err)
	}
	return c, nil
}

// Pool returns a pool holding only the bundle's CA.
func (b *Bundle) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(b.CA)
	return p
}

// ReadCert reads one PEM certificate.
func ReadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ReadKey reads one PEM PKCS #8 private key, refusing a key file others can
// read.
func ReadKey(path string) (crypto.Signer, error) {
	if err := CheckKeyFile(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
	}
	return s, nil
}

// Store is a directory holding a certificate, its key and the CA
// certificate under fixed names: the installed form of a bundle.
type Store struct {
	Dir      string
	CertFile string // e.g. "minion.crt"
	KeyFile  string // e.g. "minion.key"
}

// CAFile is the CA certificate's name in a Store's directory.
const CAFile = "ca.crt"

// Install writes b into the store's directory, refusing to replace files.
func (s Store) Install(b *Bundle) error {
	if err := os.MkdirAll(s.Dir, DirMode); err != nil {
		return err
	}
	key, err := EncodeKey(b.Key)
	if err != nil {
		return err
	}
	caPath := filepath.Join(s.Dir, CAFile)
	if have, err := os.ReadFile(caPath); err == nil && !bytes.Equal(have, EncodeCert(b.CA)) {
		// Checked before anything is written: an identity next to
		// another CA's certificate would load with the wrong trust.
		return fmt.Errorf("%s holds another CA's certificate; not installing %s's identity next to it", caPath, b.Cert.Subject.CommonName)
	}
	var written []string
	for _, f := range []struct {
		name string
		data []byte
		perm fs.FileMode
	}{{s.KeyFile, key, KeyMode}, {s.CertFile, EncodeCert(b.Cert), CertMode}, {CAFile, EncodeCert(b.CA), CertMode}} {
		path := filepath.Join(s.Dir, f.name)
		if have, err := os.ReadFile(path); err == nil && f.name == CAFile && bytes.Equal(have, f.data) {
			continue // the same CA certificate is already there
		}
		if err := WriteNew(path, f.data, f.perm); err != nil {
			// All or nothing: take back what this call wrote.
			for _, w := range written {
				os.Remove(w)
			}
			return err
		}
		written = append(written, path)
	}
	return nil
}

// Load reads the store back as a bundle, checking the key's mode.
func (s Store) Load() (*Bundle, error) {
	cert, err := ReadCert(filepath.Join(s.Dir, s.CertFile))
	if err != nil {
		return nil, err
	}
	key, err := ReadKey(filepath.Join(s.Dir, s.KeyFile))
	if err != nil {
		return nil, err
	}
	ca, err := ReadCert(filepath.Join(s.Dir, CAFile))
	if err != nil {
		return nil, err
	}
	b := &Bundle{Cert: cert, Key: key, CA: ca}
	if _, err := b.TLS(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Dir, err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%s: %s is not signed by %s: %w", s.Dir, s.CertFile, CAFile, err)
	}
	return b, nil
}

// Files of a CA in a directory.
const (
	CACertFile = CAFile
	CAKeyFile  = "ca.key"
)

// Save writes the CA's certificate and key into dir, refusing to replace
// existing files.
func (a *Authority) Save(dir string) error {
	key, err := EncodeKey(a.Key)
	if err != nil {
		return err
	}
	if err := WriteNew(filepath.Join(dir, CAKeyFile), key, KeyMode); err != nil {
		return err
	}
	return WriteNew(filepath.Join(dir, CACertFile), EncodeCert(a.Cert), CertMode)
}

// LoadAuthority reads the CA saved in dir.
func LoadAuthority(dir string) (*Authority, error) {
	cert, err := ReadCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	key, err := ReadKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}
