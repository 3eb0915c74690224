// One HTTP connection of HttpServer (http_server.h says what it does), and what all
// connections of a server share. The Beast parser lives only in http_connection.cc.
//
// Thread-safety: none; the server's Asio thread owns every connection and the hub.
#pragma once

#include <memory>
#include <unordered_map>

#include <boost/asio/ip/tcp.hpp>

#include "coordinator/http/gateway_socket.h"
#include "coordinator/http/http_server.h"
#include "coordinator/http/reply_router.h"

namespace flover::http {

class Connection;

// What the connections of one server share.
struct ConnectionHub {
  const HttpServerOptions* options = nullptr;
  GatewaySocket* gateway = nullptr;
  ReplyRouter replies;
  bool draining = false;
  // The open connections: this owns each until it closes (an exchange waiting for the
  // cluster has no I/O in progress to hold it).
  std::unordered_map<const Connection*, std::shared_ptr<Connection>> live;
};

// Serves `socket` until it closes; it counts in hub.live meanwhile.
void Serve(ConnectionHub& hub, boost::asio::ip::tcp::socket socket);

// Closes every open connection; their running submits are cancelled.
void CloseAll(ConnectionHub& hub);

// True while some connection has response bytes not yet written.
bool AnyWriting(const ConnectionHub& hub);

}  // namespace flover::http
