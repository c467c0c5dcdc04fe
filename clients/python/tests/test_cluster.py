"""The Python client against a real cluster (started by
tests/tests/python_client.rs, which sets the environment):

FERRY_COORDINATOR  HOST:PORT of the one member
FERRY_CA           the cluster's ca.pem
FERRY_USERS        a folder with NAME.pem and NAME-key.pem per user:
                   admin (admin), bob (operator), carol (operator, approver)
FERRY_GIT_URL      a git repository with one commit on main
FERRY_TRUST_DOMAIN the cluster's trust domain
"""

import os
import unittest

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ferry.v1 import approvals_pb2 as ap
from ferry.v1 import executions_pb2 as ex
from ferry.v1 import pipelines_pb2 as pl
from ferry_client import FerryError, call, connect, new_request_id, pages
from ferry_client import wait_for_action, wait_for_execution
from ferry_client.connection import check_coordinator

ADDRESS = os.environ["FERRY_COORDINATOR"]
CA = os.environ["FERRY_CA"]
USERS = os.environ["FERRY_USERS"]
GIT_URL = os.environ["FERRY_GIT_URL"]
TRUST_DOMAIN = os.environ["FERRY_TRUST_DOMAIN"]

GATED = f"""name: py-gated
source: {{git: {GIT_URL}}}
execution_mode: parallel
stages:
  - name: gate
    actions:
      - {{name: ok, type: approval}}
"""


def user(name):
    return connect(ADDRESS, CA, os.path.join(USERS, f"{name}.pem"),
                   os.path.join(USERS, f"{name}-key.pem"), trust_domain=TRUST_DOMAIN)


class Api(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin, cls.bob, cls.carol = user("admin"), user("bob"), user("carol")

    def test_server_identity_is_checked(self):
        self.assertTrue(check_coordinator(
            ADDRESS, CA, os.path.join(USERS, "admin.pem"),
            os.path.join(USERS, "admin-key.pem")).startswith(f"spiffe://{TRUST_DOMAIN}/coordinator/"))
        with self.assertRaises(ValueError):
            check_coordinator(ADDRESS, CA, os.path.join(USERS, "admin.pem"),
                              os.path.join(USERS, "admin-key.pem"), trust_domain="elsewhere")

    def test_reflection_lists_the_public_services(self):
        stub = reflection_pb2_grpc.ServerReflectionStub(self.admin.channel)
        answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=10)
        names = {s.name for a in answers for s in a.list_services_response.service}
        self.assertIn("ferry.v1.Pipelines", names)
        self.assertIn("ferry.v1.Approvals", names)
        self.assertNotIn("ferry.internal.v1.RaftPeer", names)

    def test_a_bad_file_is_refused_with_one_violation_per_problem(self):
        yaml = "name: broken\nsource: {git: /nowhere}\nstages:\n  - name: s\n    actions:\n      - {name: a, type: biuld}\n"
        with self.assertRaises(FerryError) as caught:
            call(self.carol.pipelines.ApplyPipeline, pl.ApplyPipelineRequest(yaml=yaml, file_name="bad.yml"))
        e = caught.exception
        self.assertEqual(e.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(e.reason, "LINT_FAILED")
        self.assertGreaterEqual(len(e.violations), 1)
        first = e.violations[0]
        self.assertEqual((first.file, first.line), ("bad.yml", 6), e.violations)
        self.assertGreater(first.column, 0)
        self.assertIn("biuld", first.message)

    def test_request_ids_four_eyes_and_missing_role(self):
        call(self.carol.pipelines.ApplyPipeline,
             pl.ApplyPipelineRequest(yaml=GATED, file_name="gated.yml", request_id=new_request_id()))
        # A start whose answer was "lost", sent again with the same id.
        rid = new_request_id()
        first = call(self.carol.executions.StartExecution,
                     ex.StartExecutionRequest(pipeline="py-gated", request_id=rid))
        again = call(self.carol.executions.StartExecution,
                     ex.StartExecutionRequest(pipeline="py-gated", request_id=rid))
        self.assertEqual(first.execution_id, again.execution_id)
        self.assertEqual(first.revision, again.revision)
        listed = list(pages(self.carol.executions.ListExecutions,
                            ex.ListExecutionsRequest(pipeline="py-gated"), "executions", page_size=1))
        self.assertEqual([v.execution_id for v in listed], [first.execution_id])
        # The id reused for another request is refused, not answered.
        with self.assertRaises(FerryError) as caught:
            call(self.carol.executions.StartExecution,
                 ex.StartExecutionRequest(pipeline="py-gated", revision="main", request_id=rid))
        self.assertEqual(caught.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(caught.exception.reason, "REQUEST_ID_REUSED")

        exec_id = first.execution_id
        wait_for_action(self.carol, "py-gated", exec_id, "gate", "ok",
                        ex.ACTION_STATUS_WAITING_FOR_APPROVAL, timeout=60)

        def decide(client, request_id=""):
            return call(client.approvals.Decide, ap.DecideRequest(
                pipeline="py-gated", execution_id=exec_id, action="gate/ok",
                decision=ex.APPROVAL_DECISION_APPROVED, request_id=request_id))

        # Both are PERMISSION_DENIED; the reason tells them apart.
        with self.assertRaises(FerryError) as caught:
            decide(self.bob)
        self.assertEqual(caught.exception.code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(caught.exception.reason, "MISSING_ROLE")
        with self.assertRaises(FerryError) as caught:
            decide(self.carol)
        self.assertEqual(caught.exception.code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(caught.exception.reason, "FOUR_EYES")

        # The admin neither applied nor started it; a repeated decision with
        # the same id answers the first instead of "already decided".
        rid = new_request_id()
        decide(self.admin, rid)
        decide(self.admin, rid)
        done = wait_for_execution(self.admin, "py-gated", exec_id, timeout=60)
        self.assertEqual(done.status, ex.EXECUTION_STATUS_SUCCEEDED)
        approvals = [a for s in done.stages for x in s.actions for a in x.approvals]
        self.assertEqual(len(approvals), 1, approvals)


if __name__ == "__main__":
    unittest.main(verbosity=2)
