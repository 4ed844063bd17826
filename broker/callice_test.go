package broker_test

import (
	"strconv"
	"testing"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
)

// TestCallInfoICEServers checks that every CallInfo carries the ICE
// servers Options.CallICEServers returns for the user who gets it (start
// and accept each their own), and none without it.
func TestCallInfoICEServers(t *testing.T) {
	servers := func(user uint64) []broker.ICEServer {
		u := strconv.FormatUint(user, 10)
		return []broker.ICEServer{{URLs: []string{"turn:192.0.2.1:3478?transport=udp"}, Username: "99:" + u, Credential: "pw" + u}}
	}
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: brokertest.NewCallMedia(), CallICEServers: servers}})
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	info := alice.mustCall(startFrame(chat, false))
	check := func(who string, got []string, user uint64) {
		t.Helper()
		u := strconv.FormatUint(user, 10)
		if len(got) != 3 || got[0] != "turn:192.0.2.1:3478?transport=udp" || got[1] != "99:"+u || got[2] != "pw"+u {
			t.Errorf("%s's ice servers: %q", who, got)
		}
	}
	if len(info.IceServers) != 1 {
		t.Fatalf("start: %v", info)
	}
	s := info.IceServers[0]
	check("alice", append(s.Urls, s.Username, s.Credential), 1)
	accepted := bob.mustCall(acceptFrame(info.Call))
	if len(accepted.IceServers) != 1 {
		t.Fatalf("accept: %v", accepted)
	}
	s = accepted.IceServers[0]
	check("bob", append(s.Urls, s.Username, s.Credential), 2)
	again := bob.mustCall(joinFrame(info.Call)) // joined already: the same answer
	if len(again.IceServers) != 1 {
		t.Fatalf("join again: %v", again)
	}

	off, _ := callNode(t, 0)
	carol := dial(t, off, off.Token(t, 3, 1))
	if info := carol.mustCall(startFrame(carol.createChat(direct, 4), false)); len(info.IceServers) != 0 {
		t.Errorf("without CallICEServers: %v", info.IceServers)
	}
}
