package relay

import (
	"strings"
	"testing"
)

// TestDescriptorBudget: the default MaxConns leaves FileReserve, LoopFiles
// per event loop and, with the policy listener, its connections out of the
// open-file limit, so accept on a client loop never meets EMFILE from the
// relay's own descriptors; asking for more names the reserve and the fix.
func TestDescriptorBudget(t *testing.T) {
	limit, err := fileLimit()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cfg  Config
		want int
	}{
		{Config{Loops: 1}, limit - FileReserve - LoopFiles},
		{Config{Loops: 16}, limit - FileReserve - 16*LoopFiles},
		{Config{Loops: 16, FlashPolicyListen: "127.0.0.1:0"}, limit - FileReserve - 16*LoopFiles - DefaultFlashPolicyMaxConns},
		{Config{Loops: 2, FlashPolicyListen: "127.0.0.1:0", FlashPolicyMaxConns: 500}, limit - FileReserve - 2*LoopFiles - 500},
	}
	for _, tc := range cases {
		got, err := tc.cfg.withDefaults()
		if err != nil {
			t.Fatalf("%+v: %v", tc.cfg, err)
		}
		if got.MaxConns != tc.want {
			t.Errorf("loops %d, policy %q (max %d): MaxConns %d, want %d", tc.cfg.Loops, tc.cfg.FlashPolicyListen, tc.cfg.FlashPolicyMaxConns, got.MaxConns, tc.want)
		}
		over := tc.cfg
		over.MaxConns = tc.want + 1
		if _, err := over.withDefaults(); err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
			t.Errorf("MaxConns one past the budget: %v, want an error naming RLIMIT_NOFILE", err)
		} else if tc.cfg.FlashPolicyListen != "" && !strings.Contains(err.Error(), "flash-policy-max-conns") {
			t.Errorf("error %q does not name flash-policy-max-conns", err)
		}
	}
	if _, err := (Config{FlashPolicyMaxConns: -1}).withDefaults(); err == nil {
		t.Error("FlashPolicyMaxConns -1 accepted")
	}
}
