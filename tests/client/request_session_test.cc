// RequestSession over a real Client against a scripted coordinator (a real ROUTER socket
// in the test): what it sends, how each reply ends up in the records and the events, and
// the ends it decides itself: a closed connection, silence, Ctrl-C.
#include "client/request_session.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/interrupt_flag.h"
#include "tests/client/scripted_coordinator.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::AcceptedReply;
using testing::DoneReply;
using testing::ErrorReply;
using testing::ScriptedCoordinator;
using testing::TokenReply;

// Every wait for something that must happen.
constexpr auto kLimit = 30s;

class RequestSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<Client>> client = Client::Connect(coordinator_.endpoint());
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(client).value();
  }

  // The next message the coordinator gets; fails the test when none comes.
  proto::ClientMessage Next() {
    std::optional<ScriptedCoordinator::Received> r = coordinator_.Receive();
    EXPECT_TRUE(r.has_value()) << "the coordinator got nothing";
    if (!r) return {};
    identity_ = r->identity;
    return r->message;
  }
  void Reply(const proto::ServerMessage& m) { coordinator_.Reply(identity_, m); }

  ScriptedCoordinator coordinator_;
  std::unique_ptr<Client> client_;
  std::string identity_;
};

// Polls until a poll says something (a closed connection, silence); Ok after kLimit.
Status PollUntilNotOk(RequestSession& session) {
  Status polled;
  for (auto deadline = SessionClock::now() + kLimit; polled.ok() && SessionClock::now() < deadline;)
    polled = session.Poll(200ms);
  return polled;
}

SessionRequest Request(const std::string& id, std::vector<int> prompt = {1, 2, 3}) {
  SessionRequest q;
  q.id = id;
  q.token_ids = std::move(prompt);
  q.stop.max_tokens = 8;
  return q;
}

TEST_F(RequestSessionTest, StreamsEventsAndCollectsTheCompletion) {
  RequestSession session(*client_);
  std::vector<std::pair<SessionEventKind, std::string>> events;  // kind, request id
  std::string streamed_text;
  session.OnEvent([&](const SessionEvent& e) {
    events.emplace_back(e.kind, e.request.id);
    if (e.kind == SessionEventKind::kTokens) streamed_text.append(e.text);
  });

  SessionRequest text = Request("text", {});
  text.text = "Once upon";
  text.sampling.seed = 7;
  text.deadline = 1500ms;
  ASSERT_TRUE(session.Submit(text).ok());
  ASSERT_TRUE(session.Submit(Request("ids", {1, 403})).ok());
  EXPECT_EQ(session.in_flight(), 2u);

  const proto::ClientMessage first = Next();
  ASSERT_TRUE(first.has_submit());
  EXPECT_EQ(first.submit().client_request_id(), "text");
  EXPECT_EQ(first.submit().text(), "Once upon");
  EXPECT_TRUE(first.submit().stream());
  EXPECT_EQ(first.submit().sampling().seed(), 7u);
  EXPECT_EQ(first.submit().stop().max_tokens(), 8);
  EXPECT_EQ(first.submit().timeout_ms(), 1500u) << "the deadline goes to the coordinator";
  const proto::ClientMessage second = Next();
  ASSERT_TRUE(second.has_submit());
  EXPECT_EQ(second.submit().client_request_id(), "ids");
  ASSERT_EQ(second.submit().token_ids().ids_size(), 2);
  EXPECT_EQ(second.submit().token_ids().ids(1), 403);
  EXPECT_EQ(second.submit().timeout_ms(), 0u);

  Reply(AcceptedReply("text", 1, 3));
  Reply(TokenReply("text", {10, 11}, " there"));
  Reply(AcceptedReply("ids", 0, 2));
  Reply(TokenReply("text", {12}, " was"));
  Reply(TokenReply("text", {}, " a"));  // text held back until now, no token
  proto::ServerMessage done = DoneReply("text", proto::FINISH_STOP, {10, 11, 12}, " there was a");
  done.mutable_done()->set_prompt_tokens(3);
  done.mutable_done()->set_queue_seconds(0.25);
  Reply(done);
  Reply(DoneReply("ids", proto::FINISH_LENGTH, {5, 6, 7, 8, 9, 10, 11, 12}, ""));
  ASSERT_TRUE(session.WaitAll(kLimit).ok());

  EXPECT_EQ(session.in_flight(), 0u);
  using K = SessionEventKind;
  const std::vector<std::pair<SessionEventKind, std::string>> expected = {
      {K::kAccepted, "text"}, {K::kTokens, "text"}, {K::kAccepted, "ids"}, {K::kTokens, "text"},
      {K::kTokens, "text"},   {K::kDone, "text"},   {K::kDone, "ids"}};
  EXPECT_EQ(events, expected);
  EXPECT_EQ(streamed_text, " there was a");

  const RequestRecord& r = session.record("text");
  EXPECT_EQ(r.index, 0u);
  EXPECT_TRUE(r.ended());
  EXPECT_FALSE(r.failed());
  EXPECT_EQ(r.finish, "stop");
  EXPECT_EQ(r.replica, 1);
  EXPECT_EQ(r.prompt_tokens, 3);
  EXPECT_EQ(r.streamed, (std::vector<int>{10, 11, 12}));
  EXPECT_EQ(r.tokens, r.streamed);
  EXPECT_EQ(r.streamed_text, " there was a");
  EXPECT_EQ(r.text, " there was a");
  EXPECT_EQ(r.completion_tokens, 3);
  ASSERT_TRUE(r.queue_seconds.has_value());
  EXPECT_DOUBLE_EQ(*r.queue_seconds, 0.25);
  // Times: submit <= Accepted <= each token batch (the text-only event is none) <= Done.
  ASSERT_TRUE(r.accepted_at.has_value());
  ASSERT_EQ(r.token_batches.size(), 2u);
  EXPECT_EQ(r.token_batches[0].n_tokens, 2);
  EXPECT_EQ(r.token_batches[1].n_tokens, 1);
  EXPECT_LE(r.submitted_at, *r.accepted_at);
  EXPECT_LE(*r.accepted_at, r.token_batches[0].at);
  EXPECT_LE(r.token_batches[0].at, r.token_batches[1].at);
  EXPECT_LE(r.token_batches[1].at, *r.ended_at);

  const RequestRecord& ids = session.record("ids");
  EXPECT_EQ(ids.index, 1u);
  EXPECT_EQ(ids.finish, "length");
  EXPECT_TRUE(ids.streamed.empty());
  EXPECT_EQ(ids.tokens.size(), 8u);
  ASSERT_EQ(session.records().size(), 2u);
  EXPECT_EQ(session.Find("nope"), nullptr);
}

TEST_F(RequestSessionTest, ErrorRepliesEndTheirRequestAndStrayRepliesAreDropped) {
  RequestSession session(*client_);
  int n_events = 0;
  std::vector<std::string> unmatched;
  session.OnEvent([&](const SessionEvent&) { ++n_events; });
  session.OnUnmatchedError([&](const proto::Error& e) { unmatched.push_back(e.code() + ": " + e.message()); });
  ASSERT_TRUE(session.Submit(Request("bad")).ok());
  ASSERT_TRUE(session.Submit(Request("good")).ok());
  const Status again = session.Submit(Request("bad"));
  EXPECT_EQ(again.code(), StatusCode::kInvalidArgument) << again.ToString();
  EXPECT_EQ(session.Cancel("never").code(), StatusCode::kNotFound);
  ASSERT_TRUE(Next().has_submit());
  ASSERT_TRUE(Next().has_submit());

  Reply(ErrorReply("bad", "InvalidArgument", "prompt has 700 tokens; this model allows 512"));
  Reply(ErrorReply("", "Corruption", "unreadable message"));  // the answer to garbage
  Reply(TokenReply("someone-else", {1}, "x"));                 // not this session's
  Reply(DoneReply("bad", proto::FINISH_LENGTH, {1}, "late"));  // after its end
  Reply(DoneReply("good", proto::FINISH_LENGTH, {4}, "d"));
  ASSERT_TRUE(session.WaitAll(kLimit).ok());

  const RequestRecord& bad = session.record("bad");
  EXPECT_TRUE(bad.failed());
  EXPECT_EQ(bad.finish, "error");
  EXPECT_EQ(bad.error_code, "InvalidArgument");
  EXPECT_EQ(bad.ErrorString(), "InvalidArgument: prompt has 700 tokens; this model allows 512");
  EXPECT_TRUE(bad.tokens.empty()) << "the late Done changed nothing";
  EXPECT_EQ(session.record("good").finish, "length");
  EXPECT_EQ(n_events, 2) << "one end per request, nothing for stray replies";
  EXPECT_EQ(unmatched, (std::vector<std::string>{"Corruption: unreadable message"}));
}

TEST_F(RequestSessionTest, CancelReachesTheCoordinatorAndItsDoneSaysCancelled) {
  RequestSession session(*client_);
  ASSERT_TRUE(session.Submit(Request("a")).ok());
  ASSERT_TRUE(session.Submit(Request("b")).ok());
  ASSERT_TRUE(session.Submit(Request("c")).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Next().has_submit());
  Reply(TokenReply("a", {7, 8}, "hi"));
  Reply(DoneReply("c", proto::FINISH_LENGTH, {1}, "x"));
  ASSERT_TRUE(session.WaitUntil([&] { return session.record("a").streamed.size() == 2 &&
                                             session.record("c").ended(); },
                                kLimit)
                  .ok());

  ASSERT_TRUE(session.Cancel("a").ok());
  ASSERT_TRUE(session.Cancel("c").ok()) << "an ended request: nothing to do";
  proto::ClientMessage cancel = Next();
  ASSERT_TRUE(cancel.has_cancel());
  EXPECT_EQ(cancel.cancel().client_request_id(), "a");
  Reply(DoneReply("a", proto::FINISH_CANCELLED, {7, 8}, "hi"));
  ASSERT_TRUE(session.WaitUntil([&] { return session.record("a").ended(); }, kLimit).ok());
  EXPECT_EQ(session.record("a").finish, "cancelled");
  EXPECT_EQ(session.record("a").tokens, (std::vector<int>{7, 8}));

  ASSERT_TRUE(session.CancelAll().ok());
  cancel = Next();
  ASSERT_TRUE(cancel.has_cancel());
  EXPECT_EQ(cancel.cancel().client_request_id(), "b") << "only what is in flight";
  ASSERT_TRUE(client_->RequestStatus().ok());
  EXPECT_TRUE(Next().has_status()) << "one Cancel for the one request in flight, then what came next";
  Reply(DoneReply("b", proto::FINISH_CANCELLED, {}, ""));
  ASSERT_TRUE(session.WaitAll(kLimit).ok());
  EXPECT_EQ(session.record("b").finish, "cancelled");
}

TEST_F(RequestSessionTest, StatusRepliesReachTheStatusHandlerInTheirOrderAmongTheOthers) {
  RequestSession session(*client_);
  std::vector<std::string> seen;  // "status <queued>", "tokens <id>", "done <id>"
  session.OnStatus([&](const proto::ClusterStatus& s) { seen.push_back("status " + std::to_string(s.queued())); });
  session.OnEvent([&](const SessionEvent& e) {
    if (e.kind == SessionEventKind::kTokens) seen.push_back("tokens " + e.request.id);
    if (e.kind == SessionEventKind::kDone) seen.push_back("done " + e.request.id);
  });
  ASSERT_TRUE(session.Submit(Request("a")).ok());
  ASSERT_TRUE(Next().has_submit());
  ASSERT_TRUE(client_->RequestStatus().ok());
  ASSERT_TRUE(Next().has_status());
  proto::ServerMessage status;
  status.mutable_status()->set_queued(1);
  Reply(status);
  Reply(TokenReply("a", {4}, "x"));
  status.mutable_status()->set_queued(0);
  Reply(status);
  Reply(DoneReply("a", proto::FINISH_LENGTH, {4}, "x"));
  ASSERT_TRUE(session.WaitAll(kLimit).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"status 1", "tokens a", "status 0", "done a"}));
}

TEST_F(RequestSessionTest, AClosedConnectionFailsEveryRequestInFlightAtOnce) {
  RequestSession session(*client_);
  std::vector<std::string> failed;
  session.OnEvent([&](const SessionEvent& e) {
    if (e.kind == SessionEventKind::kError) failed.push_back(e.request.id);
  });
  for (const char* id : {"done", "streaming", "queued"}) ASSERT_TRUE(session.Submit(Request(id)).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Next().has_submit());
  Reply(DoneReply("done", proto::FINISH_LENGTH, {1}, "x"));
  Reply(TokenReply("streaming", {5}, "y"));
  ASSERT_TRUE(session.WaitUntil([&] { return !session.record("streaming").streamed.empty(); }, kLimit).ok());
  coordinator_.Close();  // the coordinator crashes

  const Status polled = PollUntilNotOk(session);
  ASSERT_EQ(polled.code(), StatusCode::kUnavailable) << polled.ToString();
  EXPECT_EQ(session.in_flight(), 0u) << "the poll that saw the close ended every request in flight";
  EXPECT_EQ(failed, (std::vector<std::string>{"streaming", "queued"}));
  for (const char* id : {"streaming", "queued"}) {
    const RequestRecord& r = session.record(id);
    EXPECT_TRUE(r.failed()) << id;
    EXPECT_EQ(r.error_code, "Unavailable") << id;
    EXPECT_NE(r.error.find("the connection to the coordinator at " + coordinator_.endpoint() + " closed"),
              std::string::npos)
        << r.error;
  }
  EXPECT_EQ(session.record("streaming").tokens, (std::vector<int>{5})) << "it keeps the tokens it had";
  EXPECT_EQ(session.record("done").finish, "length") << "what had ended stays as it was";
}

TEST_F(RequestSessionTest, ADeadlineExceededAtTheCoordinatorEndsTheRequest) {
  RequestSession session(*client_);
  SessionRequest q = Request("slow");
  q.deadline = 250ms;
  ASSERT_TRUE(session.Submit(q).ok());
  const proto::ClientMessage submit = Next();
  ASSERT_TRUE(submit.has_submit());
  EXPECT_EQ(submit.submit().timeout_ms(), 250u);
  Reply(AcceptedReply("slow"));
  Reply(TokenReply("slow", {3, 4}, "ab"));
  Reply(ErrorReply("slow", "DeadlineExceeded", "not done within 0.25 s"));
  ASSERT_TRUE(session.WaitAll(kLimit).ok());
  const RequestRecord& r = session.record("slow");
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.error_code, "DeadlineExceeded");
  EXPECT_EQ(r.tokens, (std::vector<int>{3, 4}));
}

TEST_F(RequestSessionTest, SilenceEndsWhatIsInFlightAndCancelsIt) {
  RequestSessionOptions options;
  options.silence_timeout_s = 1;  // it must fire: the coordinator never answers
  RequestSession session(*client_, options);
  ASSERT_TRUE(session.Submit(Request("lost")).ok());
  ASSERT_TRUE(Next().has_submit());
  const Status polled = PollUntilNotOk(session);
  EXPECT_EQ(polled.code(), StatusCode::kDeadlineExceeded) << polled.ToString();
  const RequestRecord& r = session.record("lost");
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.ErrorString(), "Unavailable: no reply from the cluster for 1 s");
  const proto::ClientMessage cancel = Next();
  ASSERT_TRUE(cancel.has_cancel()) << "the coordinator is told to drop it";
  EXPECT_EQ(cancel.cancel().client_request_id(), "lost");
}

TEST_F(RequestSessionTest, CtrlCCancelsWhatIsInFlightAndItEndsCancelled) {
  InterruptFlag interrupt;
  RequestSessionOptions options;
  options.interrupted = interrupt.predicate();
  RequestSession session(*client_, options);
  ASSERT_TRUE(session.Submit(Request("a")).ok());
  ASSERT_TRUE(session.Submit(Request("b")).ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Next().has_submit());
  Reply(DoneReply("b", proto::FINISH_STOP, {2}, "z"));
  ASSERT_TRUE(session.WaitUntil([&] { return session.record("b").ended(); }, kLimit).ok());

  // Ctrl-C, delivered to this thread while it waits for replies: the wait ends with no
  // message (not an error) and the session cancels what is in flight.
  const pthread_t self = pthread_self();
  std::jthread ctrl_c([self] { pthread_kill(self, SIGINT); });  // joined on every path
  for (auto deadline = SessionClock::now() + kLimit; !session.interrupted();) {
    ASSERT_LT(SessionClock::now(), deadline) << "the interrupt was never seen";
    const Status polled = session.Poll(200ms);
    ASSERT_TRUE(polled.ok()) << polled.ToString();
  }
  ctrl_c.join();
  EXPECT_TRUE(interrupt.raised());
  const proto::ClientMessage cancel = Next();
  ASSERT_TRUE(cancel.has_cancel());
  EXPECT_EQ(cancel.cancel().client_request_id(), "a") << "b had ended";
  EXPECT_EQ(session.Submit(Request("c")).code(), StatusCode::kCancelled) << "nothing new once interrupted";

  Reply(DoneReply("a", proto::FINISH_CANCELLED, {9}, "q"));
  ASSERT_TRUE(session.WaitAll(kLimit).ok());
  EXPECT_EQ(session.record("a").finish, "cancelled");
  EXPECT_EQ(session.record("b").finish, "stop");
  EXPECT_EQ(session.Find("c"), nullptr);
}

TEST_F(RequestSessionTest, HandlersMaySubmitWhileTheSessionEndsRequests) {
  // A handler that submits on every end, while a closed connection ends requests: the
  // new ones are followed, not failed by the end that is going on.
  RequestSession session(*client_);
  int n_submitted = 0;
  session.OnEvent([&](const SessionEvent& e) {
    if (e.kind == SessionEventKind::kError && n_submitted < 8) {
      EXPECT_TRUE(session.Submit(Request(std::string("next") + std::to_string(n_submitted++))).ok());
    }
  });
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(session.Submit(Request(std::string("r") + std::to_string(i))).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Next().has_submit());
  coordinator_.Close();
  const Status polled = PollUntilNotOk(session);
  ASSERT_EQ(polled.code(), StatusCode::kUnavailable) << polled.ToString();
  EXPECT_EQ(n_submitted, 4);
  EXPECT_EQ(session.in_flight(), 4u) << "the four submitted by the handler";
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(session.record(std::string("next") + std::to_string(i)).ended());
}

}  // namespace
}  // namespace flover
