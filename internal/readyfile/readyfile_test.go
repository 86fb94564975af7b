package readyfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// TestWait: Wait returns the file once a writer has written it, and says
// why it gave up when the writer exits first or never writes.
func TestWait(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ready.json")
	want := Info{PID: 7, Listen: "127.0.0.1:9"}
	wrote := make(chan error, 1)
	go func() {
		time.Sleep(30 * time.Millisecond)
		wrote <- Write(path, want)
	}()
	got, err := Wait(path, nil, 10*time.Second)
	if err != nil || got != want {
		t.Fatalf("Wait: %+v, %v; want %+v", got, err, want)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}

	exited := make(chan struct{})
	close(exited)
	if _, err := Wait(filepath.Join(dir, "never.json"), exited, 10*time.Second); !errors.Is(err, ErrExited) {
		t.Fatalf("Wait after exit: %v, want ErrExited", err)
	}
	if _, err := Wait(filepath.Join(dir, "never.json"), nil, 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait without a writer: %v, want ErrTimeout", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Wait(bad, nil, 10*time.Second); err == nil || errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait on a broken file: %v, want its read error", err)
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
