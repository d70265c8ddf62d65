// The timeline page served at /ui (server/ui/timeline.html, embedded at
// build time by server/ui/embed.cmake).
#pragma once

#include <string_view>

namespace kubetrail::server {

std::string_view ui_page();

}  // namespace kubetrail::server
