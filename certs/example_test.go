package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/obsproxy/obsproxy/certs"
)

// writeSelfSigned writes a self-signed pair for name into dir.
func writeSelfSigned(dir, name string, serial int64) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(keyFile+".new", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	os.Rename(keyFile+".new", keyFile)
	os.WriteFile(certFile+".new", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.Rename(certFile+".new", certFile)
	return certFile, keyFile
}

// A Store serves the parsed pair through tls.Config.GetCertificate and
// swaps in a replaced pair at the next Check (Run calls Check on a ticker).
func ExampleStore() {
	dir, _ := os.MkdirTemp("", "certs-example")
	defer os.RemoveAll(dir)
	certFile, keyFile := writeSelfSigned(dir, "shop.example.com", 1)

	store, err := certs.Load(certs.Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := &tls.Config{GetCertificate: store.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
	cert, _ := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "shop.example.com"})
	fmt.Println(certs.NameOf(cert.Leaf), cert.Leaf.SerialNumber)

	writeSelfSigned(dir, "shop.example.com", 2) // renewed on disk
	fmt.Println("reloaded:", store.Check())
	fmt.Println(store.Current().Leaf.SerialNumber)
	ok, failed := store.Reloads()
	fmt.Println("reloads:", ok, "ok,", failed, "failed")
	// Output:
	// shop.example.com 1
	// reloaded: true
	// 2
	// reloads: 1 ok, 0 failed
}
