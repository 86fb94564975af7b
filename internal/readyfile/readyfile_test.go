package readyfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteThenRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	if _, err := Read(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read before Write: %v, want a not-exist error", err)
	}
	want := Info{PID: 42, Version: "v1", Node: 3, Listen: "127.0.0.1:1", Web: "[::]:2", HTTP: "127.0.0.1:3", Ingress: "/run/r.sock"}
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil || got != want {
		t.Fatalf("Read: %+v, %v; want %+v", got, err, want)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("%d files after Write, want only the ready file", len(ents))
	}
	if err := Write(filepath.Join(path, "x"), want); err == nil {
		t.Fatal("Write under a file: no error")
	}
}

// FuzzRead: any file content is read without a panic, and what reads as
// an Info writes and reads back the same.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"pid":1,"version":"dev","node":0,"listen":"127.0.0.1:8843","web":"","policy":"","http":"","ingress":""}`))
	f.Add([]byte(`{"pid":-1}`))
	f.Add([]byte(`not json`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "in.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := Read(path)
		if err != nil {
			return
		}
		out := filepath.Join(dir, "out.json")
		if err := Write(out, info); err != nil {
			t.Fatal(err)
		}
		again, err := Read(out)
		if err != nil || again != info {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, info)
		}
	})
}
