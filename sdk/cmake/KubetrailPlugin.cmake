# kubetrail_add_plugin(<name> SOURCES <files...> [OUTPUT_DIRECTORY <dir>])
#
# Builds <name>.so, a kubetrail handler plugin: a MODULE library without the
# "lib" prefix, hidden visibility (only the entry symbol is exported), and
# -Wl,--no-undefined so that a plugin can never depend on host symbols.
function(kubetrail_add_plugin name)
  cmake_parse_arguments(KP "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  add_library(${name} MODULE ${KP_SOURCES})
  target_link_libraries(${name} PRIVATE kubetrail::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_options(${name} PRIVATE "LINKER:--no-undefined")
  if(KP_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${KP_OUTPUT_DIRECTORY}")
  endif()
endfunction()
