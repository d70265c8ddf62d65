# Writes ui_page.cpp: the timeline page as a string in the binary, so that
# /ui needs no file at run time and the browser nothing from elsewhere.
# Run at build time: cmake -DINPUT=timeline.html -DOUTPUT=ui_page.cpp -P embed.cmake
file(READ "${INPUT}" page)
string(FIND "${page}" ")kubetrail_ui\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} holds the raw string's closing delimiter")
endif()
file(WRITE "${OUTPUT}" "// Made from server/ui/timeline.html by server/ui/embed.cmake; do not edit.
#include \"server/ui_page.hpp\"

namespace kubetrail::server {

std::string_view ui_page() {
  static constexpr char kPage[] = R\"kubetrail_ui(${page})kubetrail_ui\";
  return {kPage, sizeof kPage - 1};
}

}  // namespace kubetrail::server
")
