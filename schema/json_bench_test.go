package schema

import (
	"os"
	"testing"
)

func jsonBenchInput(b *testing.B, file string) []byte {
	b.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkFromStalwart(b *testing.B) {
	data := jsonBenchInput(b, "testdata/stalwart/auth-success.json")
	var ev Event
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := FromStalwart(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendStalwart(b *testing.B) {
	var ev Event
	if err := FromStalwart(jsonBenchInput(b, "testdata/stalwart/auth-success.json"), &ev); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendStalwart(buf[:0], &ev)
	}
}

func BenchmarkFromDovecot(b *testing.B) {
	data := jsonBenchInput(b, "testdata/dovecot/auth-request-finished.json")
	var ev Event
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := FromDovecot(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
