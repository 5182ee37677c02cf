"""Local stand-ins for Notion, Gemini, Kling and ElevenLabs, speaking their real HTTP APIs."""
