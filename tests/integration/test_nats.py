#!/usr/bin/env python3
"""The `nats` handler (issue 18) against a real 3-node nats-server JetStream
cluster on loopback, with an R3 stream the handler creates.

While a driver makes a few thousand changes through the test API server and
kubetrail publishes them, the stream's leader node is killed (SIGKILL) and
later started again. A consumer written from the NATS protocol then reads
the stream, and against the driver's ground truth (the API server's answers
to its own requests, never kubetrail's log) finds every change exactly once,
with its change-set id as Nats-Msg-Id, and each object's changes in the
order they were made. Shown to fail (the wait for all 2,440 messages times
out) with the plugin reporting a failed publish as OK: the changes made
while the stream had no leader were lost.

usage: test_nats.py KUBETRAIL_BINARY
"""
import collections, os, sys, time, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
import nats_cluster  # noqa: E402
import test_run  # noqa: E402
from test_run import ApiServer, Kubetrail  # noqa: E402
from test_faults import Cluster as Driver  # noqa: E402

STREAM = "KUBETRAIL"


def nats_handler(urls, extra=""):
    return ('[[handlers]]\nname = "bus"\nplugin = "nats"\n'
            'config = { servers = [%s], ack_timeout_ms = 2000, '
            'stream = { name = "%s", create = true, replicas = 3, subjects = ["kubetrail.>"] }%s }\n'
            # Retries that outlast a leader election on a loaded machine, as
            # an SRE sets them for a clustered sink: with the default five
            # attempts, a slow election used them up and change sets were
            # given up (CI, once: the stream was short of the 2,440).
            'retry = { attempts = 40, initial_ms = 250, max_ms = 2000 }\n'
            '[[routes]]\nname = "to-bus"\nchain = ["bus"]\n'
            % (", ".join('"%s"' % u for u in urls), STREAM, extra))


class NatsHandler(unittest.TestCase):
    def setUp(self):
        self.nats = nats_cluster.Cluster(3)
        self.server = ApiServer()
        self.kt = None

    def tearDown(self):
        if self.kt:
            self.kt.stop()
        self.server.stop()
        self.nats.stop()

    def test_every_change_once_and_in_order_while_the_stream_leader_is_killed_and_restarted(self):
        self.kt = Kubetrail(self.server, ["configmaps"], extra=nats_handler(self.nats.urls()))
        self.kt.wait_ready()
        driver = Driver(self.server)
        objects = [("default", "cm-%02d" % i) for i in range(40)]
        for ns, name in objects:
            driver.create("cm", ns, name)
        leader = nats_cluster.wait_for(
            lambda: nats_cluster.stream_info(self.nats.url("n0"), STREAM).get("cluster", {}).get("leader"),
            60, "the stream created by the handler, with a leader")
        rounds = 60  # 40 creates + 2,400 patches
        killed = None
        for r in range(rounds):
            if r == rounds // 3:
                # The leader of the R3 stream goes away mid-stream: the
                # others must elect a new one while publishes wait.
                killed = nats_cluster.stream_info(self.nats.url("n0"), STREAM)["cluster"]["leader"]
                self.nats.kill(killed)
            if r == 2 * rounds // 3:
                self.nats.start(killed)
            for ns, name in objects:
                driver.bump("cm", ns, name)
        self.nats.wait_healthy(killed)
        alive = self.nats.url(killed)  # read back from the node that was killed: it caught up
        expected = {(op["name"], str(op["rv"])) for op in driver.ops}
        self.assertEqual(len(expected), len(objects) * (rounds + 1))

        def complete():
            info = nats_cluster.stream_info(alive, STREAM)
            return info.get("state", {}).get("messages", 0) >= len(expected)

        try:
            nats_cluster.wait_for(complete, 120, "%d messages in the stream" % len(expected))
        except AssertionError as e:  # say why: what kubetrail said about the handler
            said = [line for line in self.kt.log().splitlines() if '"bus"' in line]
            raise AssertionError("%s; kubetrail on the handler:\n%s" % (e, "\n".join(said[-30:])))
        time.sleep(1.0)  # anything more (a duplicate) would arrive now
        messages = nats_cluster.read_stream(alive, STREAM)
        got = collections.Counter((m["body"]["name"], m["body"]["resourceVersion"]) for m in messages)
        self.assertEqual(set(got), expected, "changes missing or never made")
        self.assertEqual([k for k, n in got.items() if n > 1], [], "changes in the stream twice")
        ids = [m["body"]["id"] for m in messages]
        self.assertEqual(len(ids), len(set(ids)))
        for m in messages:
            self.assertEqual(m["headers"].get("Nats-Msg-Id"), m["body"]["id"])
            self.assertEqual(m["subject"], "kubetrail.it.configmaps.default")
        per_object = collections.defaultdict(list)
        for m in messages:
            per_object[m["body"]["name"]].append(int(m["body"]["resourceVersion"]))
        for name, rvs in per_object.items():
            self.assertEqual(rvs, sorted(rvs), "%s's changes out of order in the stream" % name)
        # The kill mattered: the stream had to move to another leader, and
        # the killed node is a replica again.
        info = nats_cluster.stream_info(alive, STREAM)
        self.assertEqual(info["config"]["num_replicas"], 3)
        self.assertEqual(killed, leader)  # nothing else moved it before the kill
        self.assertIn(killed, [info["cluster"]["leader"]] + [p["name"] for p in info["cluster"]["replicas"]])
        # And kubetrail met it: some publish went unacked while the leader
        # was gone and was retried (kubetrail's log shows the fault was hit;
        # what was delivered is judged above from the stream alone).
        retried = [line for line in self.kt.log().splitlines() if '"bus"' in line and "publish to" in line]
        self.assertTrue(retried, "no publish was retried: the kill did not meet the stream\n" + self.kt.log()[-3000:])
        print("\n  %d messages; leader %s killed; %d retries logged, first: %s"
              % (len(messages), killed, len(retried), retried[0][:300]), file=sys.stderr)

    def test_a_bad_subject_template_is_refused_with_its_key_and_line_named(self):
        # As for every handler: the error names the config file and line, and
        # the watcher (and any other handler) goes on.
        self.kt = Kubetrail(self.server, ["configmaps"],
                            extra=nats_handler(self.nats.urls(), ', subject = "kubetrail.{nope}"'))
        self.kt.wait_ready()
        log = test_run.wait_for(lambda: "unknown placeholder" in self.kt.log() and self.kt.log(),
                                what="the handler's create error")
        self.assertIn('kubetrail.toml:', log)
        self.assertIn('handler "bus" (plugin nats): create failed: subject: unknown placeholder {nope}', log)
        self.assertIsNone(self.kt.proc.poll())


if __name__ == "__main__":
    test_run.KUBETRAIL = sys.argv.pop(1)
    unittest.main(verbosity=2)
